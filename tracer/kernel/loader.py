"""The one module that imports bcc: compile, fill maps, attach, drain the ring buffer.

Records leave this module as raw bytes handed to a callback (tracer/model/record.py decodes them);
counters leave as plain dicts. Everything above this module runs without root and without BCC.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any, Callable, Iterable, Mapping, Optional

from tracer.kernel import host, proginfo
from tracer.model import abi
from tracer.model.errors import BccMissing, HeadersMissing, NotPrivileged, ProgramLoadFailed
from tracer.kernel.program import Program

OnRecord = Callable[[bytes], bool]   # False: enough for this poll, the rest waits in the ring
# (pid, family, raddr bytes, rport) -> (connections closed first, process name)
ActiveCloses = dict[tuple[int, int, bytes, int], tuple[int, str]]

# TTE_STAT_* of bpf/tte.h: LOST, FILTERED, ..., RST_SENT_BASE, ABORT_BASE, STATE_BASE, MAX
STAT = abi.load().prefixed("TTE_STAT_")
# struct tte_storm_key's members, as the storm buckets are handed on (tracer/explain/storm.py)
STORM_KEY_FIELDS = abi.load().structs["tte_storm_key"].names
LISTENER_NETNS_SHIFT = abi.load().defines["TTE_LISTENER_NETNS_SHIFT"]
LISTENER_TRACED = abi.load().defines["TTE_LISTENER_TRACED"]


def import_bcc() -> Any:
    try:
        import bcc  # noqa: F401  (Debian's python3-bpfcc)
    except ImportError as exc:
        raise BccMissing(str(exc)) from exc
    if not hasattr(bcc, "BPF"):
        raise BccMissing("the 'bcc' module found is not BCC (the unrelated PyPI package?)")
    return bcc


def bcc_version() -> str:
    try:
        bcc = import_bcc()
    except BccMissing:
        return "missing"
    return getattr(bcc, "__version__", "unknown")


class Loader:
    """Owns one loaded program: its maps, its attachments and its ring buffer."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self._bpf: Any = None  # bcc.BPF once loaded; BCC ships no type information
        self._full = False     # the record callback asked to end this poll

    # -- lifecycle ---------------------------------------------------------------------
    def load(self, pids: Iterable[int] = (), ports: Iterable[int] = (), netns: Iterable[int] = (),
             comms: Iterable[str] = (), inode_owners: Optional[Mapping[int, tuple[int, str]]] = None,
             listeners: Optional[Mapping[tuple[int, int], tuple[int, str, bool]]] = None) -> None:
        if os.geteuid() != 0 and not has_bpf_caps():
            raise NotPrivileged()
        bcc = import_bcc()
        if not os.path.isdir(f"/lib/modules/{os.uname().release}/build/include"):
            raise HeadersMissing(f"/lib/modules/{os.uname().release}/build")
        try:
            # Attaching happens here: BCC attaches every TRACEPOINT_PROBE/RAW_TRACEPOINT_PROBE.
            # Filters must be in place before the first event, so the program compiles them in
            # as "enabled" and drops everything until the maps are filled just below; the few
            # microseconds in between only lose events of the filtered-out kind.
            self._bpf = bcc.BPF(text=self.program.text.encode(), cflags=list(self.program.cflags))
        except Exception as exc:  # BCC raises bare Exception for compile and load failures
            raise ProgramLoadFailed(
                f"the BPF program failed to compile or load: {exc}",
                "run 'tcptrace-explain doctor' to see which kernel feature is missing",
            ) from exc
        _release_compiler_heap()
        self._fill_set("filter_pids", ctypes.c_uint32, pids)
        self._fill_set("filter_ports", ctypes.c_uint16, ports)
        self._fill_set("filter_netns", ctypes.c_uint32, netns)
        if comms:
            t = self._bpf[b"filter_comms"]
            for c in comms:
                k = t.Key()
                k.comm = c.encode()[:15]
                t[k] = ctypes.c_uint8(1)
        if inode_owners:
            self._fill_inodes(inode_owners)
        if listeners:
            self._fill_listeners(listeners)

    def set_filter_pids(self, pids: Iterable[int]) -> int:
        """Make filter_pids exactly `pids` (as far as it has room); returns how many did not fit."""
        t = self._bpf[b"filter_pids"]
        want = set(pids)
        have = {k.value for k in t.keys()}
        for pid in have - want:
            del t[t.Key(pid)]
        left = 0
        for pid in sorted(want - have):
            try:
                t[t.Key(pid)] = ctypes.c_uint8(1)
            except Exception:  # noqa: BLE001 - BCC raises bare Exception when the map is full
                left += 1
        return left

    def _fill_set(self, name: str, ctype: Any, values: Iterable[int]) -> None:
        t = self._bpf[name.encode()]
        for v in values:
            t[t.Key(v)] = ctypes.c_uint8(1)

    def _fill_inodes(self, owners: Mapping[int, tuple[int, str]]) -> None:
        t = self._bpf[b"inode_owners"]
        for n, (ino, (pid, comm)) in enumerate(owners.items()):
            if n >= t.max_entries:
                break
            leaf = t.Leaf()
            leaf.pid = pid
            leaf.comm = comm.encode()[:15]
            t[t.Key(ino)] = leaf

    def _fill_listeners(self, listeners: Mapping[tuple[int, int], tuple[int, str, bool]]) -> None:
        """(netns, port) -> (owner, name, traced): see tracer/kernel/procfs.startup_owners."""
        t = self._bpf[b"listeners"]
        for (netns, port), (pid, comm, traced) in listeners.items():
            leaf = t.Leaf()
            leaf.pid = pid
            leaf.flags = LISTENER_TRACED if traced else 0
            leaf.comm = comm.encode()[:15]
            leaf.thread = comm.encode()[:15]
            t[t.Key((netns << LISTENER_NETNS_SHIFT) | port)] = leaf

    def open_records(self, on_record: OnRecord) -> None:
        def _cb(_ctx: Any, data: Any, size: int) -> int:
            if on_record(ctypes.string_at(data, size)):
                return 0
            # A negative return makes libbpf stop after this record (it is consumed) and return
            # from the poll: under a sustained load the ring is never empty, and without this
            # one poll would never end (records pile up in memory, signals wait).
            self._full = True
            return -1

        self._cb = _cb  # keep a reference: BCC holds only a C pointer to it
        self._bpf[b"events"].open_ring_buffer(_cb)

    def poll(self, timeout_ms: int) -> None:
        """Wait up to timeout_ms for a wake-up, then drain whatever is there.

        The program wakes us only every Nth record (TTE_WAKEUP_EVERY), so the drain after the
        timeout is what bounds the latency of the records in between."""
        self._full = False
        self._bpf.ring_buffer_poll(timeout_ms)
        if not self._full:
            self._bpf.ring_buffer_consume()

    def close(self) -> None:
        if self._bpf is not None:
            self._bpf.cleanup()
            self._bpf = None

    def __enter__(self) -> "Loader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- counters ------------------------------------------------------------------------
    def stats(self) -> list[int]:
        """Per-CPU counters summed: index -> count (TTE_STAT_* of bpf/tte.h)."""
        t = self._bpf[b"stats"]
        out = [0] * STAT["MAX"]
        for k, per_cpu in t.items():
            out[k.value] = sum(per_cpu)
        return out

    def missed(self) -> tuple[Optional[dict[str, int]], tuple[str, ...]]:
        """Events each attached program was not run for (tracer/kernel/proginfo.py), by
        tracepoint ("tcp:tcp_send_reset", "inet_sk_error_report (raw)"), None where the kernel
        keeps no such counter; and the programs whose skips this kernel does not count (classic
        tracepoints before 6.7: their 0 would mean nothing)."""
        out: dict[str, int] = {}
        uncounted: list[str] = []
        counts_tracepoints = host.release_at_least(6, 7)
        for name, fn in self._bpf.funcs.items():
            func = name.decode() if isinstance(name, bytes) else str(name)
            n = proginfo.misses(fn.fd)
            if n is None:
                return None, ()
            if func.startswith("tracepoint__") and not counts_tracepoints:
                uncounted.append(tracepoint_of(func))
                continue
            out[tracepoint_of(func)] = n
        return out, tuple(sorted(uncounted))

    def program_ids(self) -> dict[str, int]:
        """Each attached program's kernel id, by tracepoint (what bpftool shows)."""
        out: dict[str, int] = {}
        for name, fn in self._bpf.funcs.items():
            got = proginfo.info(fn.fd)
            if got is not None:
                out[tracepoint_of(name.decode() if isinstance(name, bytes) else str(name))] = got[0]
        return out

    def active_closes(self) -> ActiveCloses:
        """(pid, family, raddr bytes, rport) -> (connections closed first, process name)."""
        out: ActiveCloses = {}
        for k, v in self._bpf[b"active_closes"].items():
            out[(k.pid, k.family, bytes(k.raddr), k.rport)] = (v.count, v.comm.decode("utf-8", "replace"))
        return out

    def storm_drain(self) -> list[tuple[dict[str, Any], int]]:
        """Read and delete the storm summary buckets: [(key fields, count)]."""
        out: list[tuple[dict[str, Any], int]] = []
        t = self._bpf[b"storm"]
        try:
            items = list(t.items_lookup_and_delete_batch())
        except Exception:  # kernels without batch ops: read, then delete (may miss a few increments)
            items = list(t.items())
            for k, _ in items:
                try:
                    del t[k]
                except KeyError:
                    pass
        for k, v in items:
            key = {f: getattr(k, f) for f in STORM_KEY_FIELDS}
            key["raddr"] = bytes(k.raddr)
            key["comm"] = k.comm.decode("utf-8", "replace")
            out.append((key, int(getattr(v, "value", v))))
        return out

    def attached(self) -> int:
        """Programs attached: tracepoints plus raw tracepoints."""
        b = self._bpf
        return int(b.num_open_tracepoints()) + len(getattr(b, "raw_tracepoint_fds", {}))

    def table_len(self, name: str) -> int:
        table = self._bpf[name.encode()]
        if name == "closed":  # a set-associative array (bpf/maps.bpf.h): its occupied slots
            return sum(1 for v in table.values() if v.c.destroy_ns)
        return sum(1 for _ in table.keys())

    def table_max(self, name: str) -> int:
        return int(self._bpf[name.encode()].max_entries)


def tracepoint_of(func: str) -> str:
    """BCC's function name of a probe as the tracepoint it is attached to."""
    if func.startswith("raw_tracepoint__"):
        return func[len("raw_tracepoint__"):] + " (raw)"
    if func.startswith("tracepoint__"):
        return func[len("tracepoint__"):].replace("__", ":", 1)
    return func


def _release_compiler_heap() -> None:
    """Give the heap the in-process clang/LLVM compile left behind back to the OS.

    Compiling takes tens of MB that glibc otherwise keeps for reuse; the tracer never compiles
    again, so trim it (glibc only; a no-op elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


CAP_DAC_READ_SEARCH = 2   # include/uapi/linux/capability.h
CAP_SYS_PTRACE = 19
CAP_PERFMON = 38
CAP_BPF = 39


def has_caps(*caps: int) -> bool:
    """Every one of these capabilities is in the effective set."""
    try:
        with open("/proc/self/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    eff = int(line.split()[1], 16)
                    return all(eff & (1 << c) for c in caps)
    except OSError:
        pass
    return False


def has_bpf_caps() -> bool:
    """CAP_BPF and CAP_PERFMON in the effective set."""
    return has_caps(CAP_BPF, CAP_PERFMON)
