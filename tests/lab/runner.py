"""Run lab scenarios against a live capture and judge the explanations against ground truth.

Ground truth comes from three places the tracer does not control: what the peers' socket
calls raised, the kernel's own counters (nstat per namespace) and, optionally, the wire
(tshark counting RST segments on each namespace's interface).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

from tracer.explain import insights
from tracer.kernel import localaddrs
from tracer.explain.pipeline import explain_stream
from tracer.explain.procinfo import ProcessFacts
from tracer.explain.rules import Explanation
from tests.lab import kernel
from tests.lab.driver import spawn_peer
from tests.lab.timing import wait
from tests.lab.scenarios import IDLE_TOLERANCE_S, INFERRED_TOLERANCE, Expect, Scenario
from tracer.model.record import Record, decode

SETTLE_S = 0.4
NSTAT_KEYS = ("TcpOutRsts", "TcpEstabResets", "TcpExtTCPAbortOnClose", "TcpExtTCPAbortOnData",
              "TcpExtTCPAbortOnTimeout", "TcpExtTCPAbortOnLinger", "TcpExtTCPAbortOnMemory")


class Collector:
    """Polls a started Capture on a thread; keeps decoded records and their raw bytes."""

    def __init__(self, capture) -> None:
        self.capture = capture
        self.records: list[Record] = []
        # Runtimes of the processes, read from /proc as their records arrive (they may exit soon)
        self.facts = ProcessFacts()
        self.raw: list[bytes] = []
        self._lock = threading.Lock()
        self._polls = 0                 # polls finished (catch_up() waits on it)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="collector", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            got = self.capture.poll(10)
            if got:
                for r in got:
                    self.facts.note(r.pid, r.comm)
                with self._lock:
                    self.records.extend(got)
            self._polls += 1

    def raw_sink(self, data: bytes) -> None:
        # Called on the polling thread, before decoding.
        self.raw.append(data)

    def snapshot(self) -> list[Record]:
        with self._lock:
            return list(self.records)

    def wait_for(self, pred, timeout: float = 5.0, count: int = 1) -> list[Record]:
        deadline = time.monotonic() + wait(timeout)
        while True:
            found = [r for r in self.snapshot() if pred(r)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def account(self, netns: int, since_ns: int) -> str:
        """Why a wait found nothing: what the kernel counted (a record it dropped, summarized in
        a storm or filtered shows here) and what this namespace's records were."""
        c = self.capture.counters()
        mine = [f"{r.type.name}/{r.state}/{r.errno}" for r in self.snapshot() if r.netns == netns and r.ts_ns >= since_ns]
        return (f"kernel: lost={c.lost} summarized={c.summarized} storm_full={c.storm_full} filtered={c.filtered} "
                f"aborts_by_errno={c.aborts_by_errno} missed={c.missed_by}; read={self.capture.received} "
                f"undecodable={self.capture.decode_errors}; collector alive={self._thread.is_alive()}; "
                f"this namespace since the test began: {mine[-20:]}")

    def settle(self, seconds: float = 0.3) -> None:
        time.sleep(seconds)

    def catch_up(self, timeout: float = 5.0) -> None:
        """Return once every record submitted before this call has been read: two more polls
        finish (the second began after this call, and a poll reads what the ring holds). In a
        slow guest the polling thread can lag the kernel by more than a settle period."""
        target = self._polls + 2
        deadline = time.monotonic() + wait(timeout)
        while self._polls < target and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass
class RunResult:
    scenario: Scenario
    truth: dict
    records: list[Record]
    raw: list[bytes]
    netns: dict[str, int]
    local_addrs: list[str]
    nstat: dict[str, dict[str, int]]
    wire_rsts: Optional[dict[str, int]] = None
    explanations: list[Explanation] = field(default_factory=list)
    insights: list = field(default_factory=list)
    # Where it ran: 6.10+ traces resets with no socket and from TIME_WAIT sockets (tests/lab/kernel.py)
    traces_every_reset: bool = True

    def side_of(self, netns: int) -> Optional[str]:
        for role, ino in self.netns.items():
            if ino == netns:
                return role
        return None


def _nstat(topo, host) -> dict[str, int]:
    n = topo.nstat(host)
    return {k: n.get(k, 0) for k in NSTAT_KEYS}


class _Wire:
    """RST segments on one namespace's interface: captured with dumpcap, counted with tshark.

    dumpcap, not tshark, captures: starting tshark probes its extcap plugins (androiddump
    connects to localhost:5037), which makes the kernel send real resets in the namespace
    under test. Counting (tshark -r) runs in the caller's namespace, after the scenario."""

    def __init__(self, topo, host) -> None:
        self.file = tempfile.NamedTemporaryFile(prefix="tte-", suffix=".pcap", delete=False).name
        os.chmod(self.file, 0o666)
        self.p = topo.popen(host, ["dumpcap", "-q", "-i", host.ifname, "-f", "tcp[tcpflags] & tcp-rst != 0",
                                   "-w", self.file], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # dumpcap reports "Capturing on ..." on stderr once it listens.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = self.p.stderr.readline()
            if "Capturing on" in line or not line:
                break

    def stop(self) -> None:
        time.sleep(0.2)
        self.p.terminate()
        self.p.wait(timeout=wait(10))

    def count(self) -> int:
        out = subprocess.run(["tshark", "-r", self.file, "-Y", "tcp.flags.reset == 1", "-T", "fields",
                              "-e", "frame.number"], capture_output=True, text=True, timeout=wait(60)).stdout
        os.unlink(self.file)
        return len(out.split())


def run(scenario: Scenario, collector: Collector, wire: bool = False) -> RunResult:
    with scenario.topology() as topo:
        hosts = {"client": topo.client, "server": topo.server}
        if topo.router is not None:
            hosts["router"] = topo.router
        netns = {role: topo.netns_inode(h) for role, h in hosts.items()}
        before = {role: _nstat(topo, h) for role, h in hosts.items()}
        wires = {role: _Wire(topo, hosts[role]) for role in ("client", "server")} if wire else {}
        raw_start = len(collector.raw)
        closes_before = collector.capture.active_closes()
        since = time.monotonic_ns()
        truth = scenario.act(topo, spawn_peer)
        collector.settle(SETTLE_S)
        until = time.monotonic_ns()
        collector.catch_up()
        closes_after = collector.capture.active_closes()
        # While the namespaces (and the scenario's processes, if they still run) exist.
        found = insights.time_wait_pileups(closes_before, closes_after, (until - since) / 1e9,
                                           time_wait_of=insights.proc_time_wait)
        addrs = sorted(localaddrs.scan())
        after = {role: _nstat(topo, h) for role, h in hosts.items()}
        for w in wires.values():
            w.stop()
    wire_rsts = {role: w.count() for role, w in wires.items()} if wire else None
    inodes = set(netns.values())
    records = [r for r in collector.snapshot() if r.netns in inodes and since <= r.ts_ns <= until]
    keep = {(r.ts_ns, r.skaddr, r.type) for r in records}
    ctx = collector.capture.context
    raw = [b for b in collector.raw[raw_start:] if _key(b, ctx) in keep]
    deltas = {role: {k: after[role][k] - before[role][k] for k in NSTAT_KEYS} for role in hosts}
    result = RunResult(scenario, truth, records, raw, netns, addrs, deltas, wire_rsts,
                       traces_every_reset=kernel.traces_every_reset())
    result.explanations = explain_records(records, addrs, collector.facts)
    result.insights = found
    return result


def _key(raw: bytes, ctx) -> tuple:
    r = decode(raw, ctx)
    return (r.ts_ns, r.skaddr, r.type)


def explain_records(records: list[Record], local_addrs: list[str],
                    facts: Optional[ProcessFacts] = None) -> list[Explanation]:
    return explain_stream(records, localaddrs.from_list(local_addrs), facts=facts)


def check(result: RunResult) -> list[str]:
    """What the explanations got wrong against the scenario's expectations (empty: all right)."""
    problems = []
    for e in result.scenario.expects:
        ino = result.netns[e.side]
        found = sorted((x for x in result.explanations if x.netns == ino and x.event == e.event),
                       key=lambda x: x.ts_ns)
        # The scenario's first event of this kind on this side is the one it is about; later
        # ones are teardown (e.g. a FIN answered after the connection was reset).
        if e.untraced_before_6_10 and not result.traces_every_reset:
            if found:
                problems.append(f"{e.side} {e.event}: this kernel sends this reset untraced, "
                                f"yet the tool showed {[x.verdict.value for x in found]}")
            continue
        ok = found[:1] if found and _matches(found[0], e) else []
        if not ok:
            seen = [f"{x.event}/{x.verdict.value}/{x.who.value}/{x.comm}/{x.errno}/idle={x.idle_s}/{x.inferred}"
                    f"{f'/{dict(x.inferred_range)}' if x.inferred_range else ''}"
                    for x in found]
            problems.append(f"{e.side} {e.event}: expected {e.verdict.value}/{e.who.value}"
                            f"{'/' + e.comm if e.comm else ''}{'/' + e.errno if e.errno else ''}"
                            f"{f'/idle≈{e.idle_s}' if e.idle_s else ''}{f'/{e.inferred}' if e.inferred else ''}; "
                            f"got {seen or 'nothing'}; that side's records: {_records_of(result, ino)}")
    return problems


def _records_of(result: RunResult, ino: int) -> list[str]:
    """A failed expectation's evidence: the side's records as captured (whether an error
    report was missing or only not joined shows here)."""
    t0 = min((r.ts_ns for r in result.records), default=0)
    return [f"+{(r.ts_ns - t0) / 1e6:.3f}ms {r.type.name} {r.state} errno={r.errno} sk={r.skaddr:#x} "
            f"{r.lport}->{r.rport}" for r in result.records if r.netns == ino][:30]


def _matches(x: Explanation, e: Expect) -> bool:
    if x.verdict is not e.verdict or x.who is not e.who:
        return False
    if e.comm and x.comm != e.comm:
        return False
    if e.errno and x.errno != e.errno:
        return False
    if e.idle_s is not None and (x.idle_s is None or abs(x.idle_s - e.idle_s) > IDLE_TOLERANCE_S):
        return False
    if e.in_range is not None:
        key, configured = e.in_range
        rng = x.inferred_range.get(key)
        if rng is None or not rng[0] <= configured <= rng[1]:
            return False
    if e.inferred is not None:
        key, want = e.inferred
        got = x.inferred.get(key)
        if got is None or abs(got - want) > INFERRED_TOLERANCE * want:
            return False
    return True


def _base_reason(x: Explanation) -> str:
    return (x.reason or "").replace("inferred:", "")


def count_agreement(result: RunResult) -> list[str]:
    """Counts the tool reports against the kernel's own counters and the wire, per namespace.

    - resets sent (records)                      == Tcp OutRsts
    - TCP_ABORT_ON_CLOSE resets                  == TcpExt TCPAbortOnClose
    - TCP_ABORT_ON_DATA resets + SO_LINGER 0     == TcpExt TCPAbortOnData (reference §2.2: a
      linger-0 close counts there, not in TCPAbortOnLinger)
    - keepalive, retransmit and SYN timeouts     == TcpExt TCPAbortOnTimeout
    - wire, pair topologies: RST segments on the client's link == resets sent by either end
      plus resets injected by a middlebox
    """
    problems = []
    for role, ino in result.netns.items():
        mine = [x for x in result.explanations if x.netns == ino]
        sent = [r for r in result.records if r.netns == ino and r.type.value == "reset_sent"]
        d = result.nstat[role]
        checks = {
            "TcpOutRsts": len(sent),
            "TcpExtTCPAbortOnClose": sum(1 for x in mine if x.event == "reset_sent"
                                         and _base_reason(x) == "TCP_ABORT_ON_CLOSE"),
            "TcpExtTCPAbortOnData": sum(1 for x in mine if x.event == "reset_sent" and (
                _base_reason(x) == "TCP_ABORT_ON_DATA" or x.verdict.value == "linger_abort")),
            "TcpExtTCPAbortOnTimeout": sum(1 for x in mine if x.verdict.value in
                                           ("keepalive_timeout", "retransmit_timeout", "syn_timeout")),
        }
        every = result.traces_every_reset
        for key, ours in checks.items():
            if key == "TcpOutRsts" and not every:
                # Resets with no socket or from TIME_WAIT sockets are sent untraced: the tool
                # sees a part of the kernel's count, never more (its summary shows both).
                if ours > d[key]:
                    problems.append(f"{role}: kernel {key} +{d[key]}, tool {ours} (more than the kernel sent)")
            elif d[key] != ours:
                problems.append(f"{role}: kernel {key} +{d[key]}, tool {ours}")
    if result.wire_rsts is not None and "router" not in result.netns:
        sent_total = sum(1 for r in result.records if r.type.value == "reset_sent")
        if not result.traces_every_reset:
            # The wire against the kernel's own count of what it sent (the tool saw a part of it).
            sent_total = sum(result.nstat[role]["TcpOutRsts"] for role in result.netns)
        injected = sum(1 for x in result.explanations if x.who.value == "middlebox" and x.event == "reset_received")
        if result.wire_rsts["client"] != sent_total + injected:
            problems.append(f"wire: {result.wire_rsts['client']} RST segments on the client's link, "
                            f"tool: {sent_total} sent + {injected} injected")
    return problems
