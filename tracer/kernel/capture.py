"""A capture session: from Options to a stream of decoded Records and kernel counters.

This is the API the console, the exporter and the tests use. It strings together the steps
that live in their own modules (preflight checks, feature probing, program build, the loader,
/proc preload of existing owners) and decodes every record at the edge.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Callable, Optional

from tracer.kernel import host as kernel
from tracer.kernel import loader as loader_mod
from tracer.kernel import preflight, procfs
from tracer.kernel import program as program_mod
from tracer.kernel.btf import Btf, BtfError
from tracer.model.errors import KernelUnsupported, TteError
from tracer.kernel.features import Features, read_features
from tracer.model.counters import Counters
from tracer.model.options import Options
from tracer.model.record import DecodeContext, Record, RecordDecodeError, decode


# Records one poll() hands over at most. The ring buffer is never empty under a load faster
# than the explainer: without a bound one poll would never return (memory grows with the
# backlog, SIGTERM waits for it). Past this the rest stays in the kernel's ring, whose
# overflow the program counts as lost; 1,024 records are about 0.1 s of explaining here.
BATCH_MAX = 1024


def clock_offset_ns() -> int:
    """CLOCK_REALTIME - CLOCK_MONOTONIC, to turn bpf_ktime_get_ns() into wall time."""
    return time.time_ns() - time.monotonic_ns()


class Capture:
    def __init__(self, options: Options, features: Optional[Features] = None) -> None:
        self.options = options
        self.features = features
        self.program: Optional[program_mod.Program] = None
        self.context: Optional[DecodeContext] = None
        self.decode_errors = 0
        self.received = 0          # records read from the ring
        self._loader: Optional[loader_mod.Loader] = None
        self._pending: list[Record] = []
        self._raw_sink: Optional[Callable[[bytes], None]] = None
        self._sink_error: Optional[OSError] = None

    def build(self) -> program_mod.Program:
        preflight.check_environment()
        if self.features is None:
            self.features = read_features()
        preflight.check_pids(self.options.pids)
        try:
            btf = Btf.load(kernel.BTF_PATH) if kernel.btf_present() else None
        except BtfError as exc:
            raise KernelUnsupported(f"cannot read BTF: {exc}") from exc
        hz = kernel.detect_hz()
        if hz is None:
            raise KernelUnsupported(
                "cannot tell the kernel's HZ (no /proc/config.gz, no /boot/config, no /proc/timer_list)",
                "report this kernel to the project",
            )
        self.program = program_mod.build(self.options, self.features, btf, hz)
        self.context = DecodeContext(
            tcp_states=self.features.tcp_states,
            reset_reasons={} if self.options.ignore_kernel_reason else self.features.reset_reasons,
            mono_to_wall_ns=clock_offset_ns(),
            hostname=socket.gethostname(),
            kernel=kernel.release(),
        )
        return self.program

    def start(self, raw_sink: Optional[Callable[[bytes], None]] = None) -> None:
        """Compile, load, attach. raw_sink (for --record) sees every record's bytes."""
        if self.program is None:
            self.build()
        assert self.program is not None
        owners, listening = procfs.startup_owners(self.options.pids, self.options.children,
                                                  limit=self.options.max_inodes)
        self._raw_sink = raw_sink
        self._loader = loader_mod.Loader(self.program)
        self._loader.load(pids=self.options.pids, ports=self.options.ports, netns=self.options.netns,
                          comms=self.options.comms, inode_owners=owners, listeners=listening)
        self._loader.open_records(self._on_raw)

    def _on_raw(self, data: bytes) -> bool:
        # Runs inside a ctypes callback, where an exception would only be printed and ignored:
        # keep the first failure and raise it from poll().
        if self._raw_sink is not None and self._sink_error is None:
            try:
                self._raw_sink(data)
            except OSError as exc:
                self._sink_error = exc
        assert self.context is not None
        self.received += 1
        try:
            self._pending.append(decode(data, self.context))
        except RecordDecodeError:
            self.decode_errors += 1
        return len(self._pending) < BATCH_MAX

    def poll(self, timeout_ms: int = 20) -> list[Record]:
        assert self._loader is not None, "start() first"
        self._loader.poll(timeout_ms)
        if self._sink_error is not None:
            raise TteError(f"cannot write the recording: {self._sink_error.strerror or self._sink_error}",
                           "free space or choose another --record path")
        out, self._pending = self._pending, []
        return out

    def counters(self) -> Counters:
        assert self._loader is not None and self.context is not None
        s = self._loader.stats()
        at = loader_mod.STAT
        reasons = self.context.reset_reasons
        sent: dict[str, int] = {}
        # reasons 0..62 count at RST_SENT_BASE + reason, a reason the kernel did not give at +63
        n_reasons = at["ABORT_BASE"] - at["RST_SENT_BASE"]
        for i in range(n_reasons):
            n = s[at["RST_SENT_BASE"] + i]
            if n:
                name = "unknown" if i == n_reasons - 1 else reasons.get(i, f"UNKNOWN({i})")
                sent[name] = sent.get(name, 0) + n
        aborts = {e: s[at["ABORT_BASE"] + e] for e in range(at["STATE_BASE"] - at["ABORT_BASE"])
                  if s[at["ABORT_BASE"] + e]}
        states = {}
        for i in range(at["MAX"] - at["STATE_BASE"]):
            n = s[at["STATE_BASE"] + i]
            if n:
                o, nw = divmod(i, 16)
                states[(self.context.state_name(o) or "NONE", self.context.state_name(nw) or "NONE")] = n
        return Counters(lost=s[at["LOST"]], filtered=s[at["FILTERED"]], records=s[at["RECORDS"]],
                        socks_insert=s[at["SOCKS_INSERT"]], socks_delete=s[at["SOCKS_DELETE"]],
                        rst_received=s[at["RST_RECEIVED"]], rst_sent_by_reason=sent, aborts_by_errno=aborts,
                        states=states, summarized=s[at["SUMMARIZED"]], storm_full=s[at["STORM_FULL"]],
                        **Counters.missed_fields(*self._loader.missed()))

    def refresh_children(self) -> set[int]:
        """--children: the traced processes' descendants now, also handed to the kernel filter
        (a new worker's own connect()s are traced from here on; what it accepts always is)."""
        if not self.options.children:
            return set()
        assert self._loader is not None
        found: set[int] = set()
        for pid in self.options.pids:
            found.update(procfs.process_tree(pid)[1:])
        self._loader.set_filter_pids(self.options.pids | found)
        return found

    def storm(self) -> list[Any]:
        """Storm buckets since the last call, as tracer.explain.storm.StormCount."""
        from tracer.explain.storm import decode_bucket, join

        assert self._loader is not None and self.context is not None
        return join([decode_bucket(k, n, self.context) for k, n in self._loader.storm_drain()])

    def attached(self) -> int:
        assert self._loader is not None
        return self._loader.attached()

    def active_closes(self) -> loader_mod.ActiveCloses:
        assert self._loader is not None
        return self._loader.active_closes()

    def table_usage(self) -> dict[str, tuple[int, int]]:
        assert self._loader is not None
        return {n: (self._loader.table_len(n), self._loader.table_max(n)) for n in ("socks", "closed", "listeners")}

    def close(self) -> None:
        if self._loader is not None:
            self._loader.close()
            self._loader = None

    def __enter__(self) -> "Capture":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
