"""Naming the right thing: the server on the other end and its setting, the client's runtime
and its settings first, and every inferred timeout a range whose advice is below it."""

from __future__ import annotations

import io
import os
import re
import struct

import pytest

from tests.unit.helpers import record
from tracer.explain import bounds, knowledge, procinfo, software
from tracer.explain.case import Case
from tracer.explain.rules import explain_case
from tracer.kernel import procfs
from tracer.model.record import RecordType
from tracer.model.verdicts import Confidence, Verdict

pytestmark = pytest.mark.unit

S = 1_000_000_000
SENT, RECV = RecordType.RESET_SENT, RecordType.RESET_RECEIVED
PRODUCTS = ("gunicorn", "nginx", "Redis", "redis-server", "HAProxy", "Tomcat", "Envoy", "Node.js", "Apache",
            "PostgreSQL", "MySQL", "Reactor Netty", "HikariCP", "urllib3", "redis-py", "Go net/http", "OkHttp",
            "Lettuce", "Jedis", "libpq", "hiredis", "curl")


def idle_close(gap_s: float, peer_comm: str = "", runtime=None, rport: int = 8080, peer_thread: str = "") -> Case:
    peer = record(type=SENT, reason="TCP_TIMEWAIT_SOCKET", comm=peer_comm, thread=peer_thread or peer_comm,
                  pid=7 if peer_comm else 0, laddr="10.0.0.2", lport=rport, raddr="10.0.0.1", rport=40000) \
        if peer_comm else None
    return Case(event=RECV, state="CLOSE_WAIT", flags=frozenset({"connected"}), pid=100, comm="app",
                laddr="10.0.0.1", lport=40000, raddr="10.0.0.2", rport=rport, idle_s=gap_s + 1,
                since_fin_ns=S, gap_before_fin_ns=int(gap_s * S), peer=peer, peer_local=bool(peer_comm),
                runtime=runtime)


def products_in(text: str) -> set[str]:
    return {p for p in PRODUCTS if p in text}


@pytest.mark.parametrize("comm,setting,gap,configured", [
    ("redis-server", "timeout", 2.2, 2), ("redis-server", "timeout", 2.8, 2), ("redis-server", "timeout", 3.09, 2),
    ("nginx", "keepalive_timeout", 2.003, 2), ("haproxy", "timeout http-keep-alive", 2.004, 2)])
def test_the_identified_server_and_its_setting_are_named_never_another(comm, setting, gap, configured):
    e = explain_case(idle_close(gap, comm))
    assert e.verdict is Verdict.WRITE_AFTER_PEER_CLOSE
    srv = software.server(comm)
    assert srv is not None and e.software is not None
    assert e.software["name"] == srv.product and e.software["identified"] is True
    text = " ".join(e.evidence + e.fix) + e.explanation
    assert setting in text
    others = products_in(text) - {srv.product, comm, "Redis"}
    assert others == set(), f"named other products: {others}"
    lo, hi = e.inferred_range["peer_keepalive_timeout_s"]
    assert lo <= configured <= hi
    assert_advice_below(e.fix, lo)


def test_an_unidentified_server_is_an_example_with_medium_confidence():
    e = explain_case(idle_close(2.003))
    assert e.software == {"name": knowledge.component_near(2.003, "fin").component, "identified": False,
                          "confidence": Confidence.MEDIUM.value}
    assert any("not identified: for example" in ev for ev in e.evidence)


def numbers_s(line: str) -> list[float]:
    """Every duration an advice line gives, in seconds."""
    out = []
    for v, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s)\b", line):
        out.append(float(v) / (1000 if unit == "ms" else 1))
    out += [int(v) / 1000 for v in re.findall(r"ofMillis\((\d+)\)|(?<![\w.])(\d+), MILLISECONDS", line) for v in v if v]
    out += [int(v) / 1000 for v in re.findall(r"(\d+) \* time\.Millisecond", line)]
    out += [float(v) for v in re.findall(r"(?:keepalive_expiry|keepalive_timeout|health_check_interval|pool_recycle)"
                                         r"=(\d+(?:\.\d+)?)", line)]
    return out


def assert_advice_below(fix, lower):
    for line in fix:
        if "evict at" in line:
            at = float(re.search(r"evict at about (\d+(?:\.\d+)?) (ms|s)", line).group(1))
            unit = re.search(r"evict at about \S+ (ms|s)", line).group(1)
            assert at / (1000 if unit == "ms" else 1) < lower, line
        if "less than" in line or "is between" in line or "more often than" in line:
            continue
        for n in numbers_s(line):
            assert n < lower, f"{line}: {n} s is not below {lower}"


@pytest.mark.parametrize("runtime,port,first", [
    ("python", 6379, "redis-py"), ("python", 8080, "Python requests/urllib3"), ("java", 8080, "Reactor Netty"),
    ("java", 6379, "Lettuce"), ("java", 5432, "HikariCP"), ("go", 8080, "Go net/http"), ("curl", 8080, "curl"),
    ("hiredis", 6379, "hiredis"), ("libpq", 5432, "libpq"), ("node", 8080, "Node http.Agent")])
def test_the_clients_own_runtime_comes_first(runtime, port, first):
    e = explain_case(idle_close(2.5, rport=port, runtime=runtime))
    assert e.fix[0].startswith(first), e.fix
    assert_advice_below(e.fix, e.inferred_range["peer_keepalive_timeout_s"][0])
    assert e.runtime == runtime


def test_an_unknown_runtime_gets_the_generic_advice_only():
    e = explain_case(idle_close(2.5))
    assert e.fix[0].startswith("keep pooled connections idle for less than")
    assert not any(p in e.fix[0] for p in ("Netty", "HikariCP", "urllib3"))


@pytest.mark.parametrize("gap,late", [(0.5, 1.1), (2.2, 1.1), (30.0, 0.1), (400.0, None)])
def test_ranges_contain_the_observation_and_advice_is_below_the_lower_bound(gap, late):
    srv = software.Server("x", "s", "d", "http", late) if late is not None else None
    r = bounds.server_timeout(gap, srv)
    assert r.lower <= gap <= r.upper and r.evict_s < r.lower or r.lower == 0
    assert r.keepalive_s <= r.evict_s


def test_a_middlebox_timeout_is_bounded_from_above_only_and_no_number_is_advised():
    r = bounds.middlebox_timeout(4.0)
    assert r.lower == 0 and r.upper >= 4.0
    lines = knowledge.pool_fix(r, "go", "http", "the middlebox's idle timeout")
    assert "IdleConnTimeout = N" in lines[0] and "not bounded from below" in lines[-1]


def test_runtime_detection_from_exe_maps_and_name():
    assert procinfo.detect("myapp", "/usr/bin/python3.11", [], None) == ("python", "exe")
    assert procinfo.detect("java", "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
                           ["/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so"], None)[0] == "java"
    assert procinfo.detect("worker", "/opt/app/worker", ["/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0",
                                                          "/usr/lib/x86_64-linux-gnu/libpq.so.5.15"], None) \
        == ("python", "maps")
    assert procinfo.detect("psql", "/usr/lib/postgresql/15/bin/psql", ["/usr/lib/x86_64-linux-gnu/libpq.so.5"],
                           None) == ("libpq", "exe")
    assert procinfo.detect("svc", "/srv/svc", ["/usr/lib/x86_64-linux-gnu/libhiredis.so.0.14"], None) \
        == ("hiredis", "maps")
    assert procinfo.detect("svc", "/srv/svc", [], "go1.22.1") == ("go", "go-buildinfo")
    assert procinfo.detect("curl", None, [], None) == ("curl", "comm")
    assert procinfo.detect("tte-pool", None, [], None) == (None, "comm")


def test_facts_of_this_very_process_from_proc():
    me = os.getpid()
    f = procinfo.read_facts(me, procfs.process_comm(me) or "")
    assert f.runtime == "python" and f.exe and f.source in ("exe", "maps")
    # A pid whose process is not the one recorded: only the recorded name counts.
    assert procinfo.read_facts(me, "curl") == procinfo.Facts("curl", runtime="curl")


def test_process_facts_are_bounded():
    pf = procinfo.ProcessFacts(size=2)
    for pid in (os.getpid(), os.getppid(), 1):
        pf.note(pid, procfs.process_comm(pid) or "")
    assert pf.evicted == 1 and pf.get(os.getpid(), procfs.process_comm(os.getpid()) or "") is None


def elf(sections: list[tuple[bytes, bytes]]) -> bytes:
    """A minimal ELF64 little-endian image with the given (name, contents) sections."""
    names = b"\0" + b"".join(n + b"\0" for n, _ in sections) + b".shstrtab\0"
    body, offs = b"", []
    for _, data in sections:
        offs.append(64 + len(body))
        body += data
    str_off = 64 + len(body)
    body += names
    shoff = 64 + len(body)
    sh = [struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)]
    pos = 1
    for (n, data), off in zip(sections, offs):
        sh.append(struct.pack("<IIQQQQIIQQ", pos, 1, 0, 0, off, len(data), 0, 0, 1, 0))
        pos += len(n) + 1
    sh.append(struct.pack("<IIQQQQIIQQ", pos, 3, 0, 0, str_off, len(names), 0, 0, 1, 0))
    head = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9 + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0, 0, shoff, 0, 64,
                                                                   0, 0, 64, len(sh), len(sh) - 1)
    return head + body + b"".join(sh)


def test_go_build_info_from_an_elf_section():
    version = b"go1.22.1"
    info = b"\xff Go buildinf:" + bytes([8, 2]) + b"\0" * 16 + bytes([len(version)]) + version
    assert procfs.elf_go_version(io.BytesIO(elf([(b".text", b"\x90" * 16), (b".go.buildinfo", info)]))) == "go1.22.1"
    assert procfs.elf_go_version(io.BytesIO(elf([(b".text", b"\x90" * 16)]))) is None
    with open("/bin/ls", "rb") as fh:
        assert procfs.elf_go_version(fh) is None


def test_advice_under_a_second_uses_settings_that_can_express_it():
    r = bounds.Range(0.9, 1.0)
    lines = knowledge.pool_fix(r, "curl", "http")
    assert lines[0].startswith("curl/libcurl: the limit is under 1 s") and "CURLOPT_FORBID_REUSE" in lines[0]
    assert "cannot be safely below" in knowledge.keepalive_fix(r)
    go = knowledge.pool_fix(r, "go", "http")[0]
    assert "720 * time.Millisecond" in go          # 80 % of the lower bound, not of the upper


def test_printed_bounds_round_outwards():
    assert bounds.fmt_s(1.99) == "1.9 s" and knowledge.up(2.01) == "2.1 s"
    assert knowledge.range_words(bounds.Range(2.0, 2.0)) == "2.0 s"


def linger0(runtime=None) -> Case:
    return Case(event=SENT, state="CLOSE", reason="TCP_STATE", kernel_reason="TCP_STATE", pid=100, comm="app",
                flags=frozenset({"connected", "linger"}), laddr="10.0.0.1", lport=40000, raddr="10.0.0.2",
                rport=8080, runtime=runtime)


def stale(runtime=None) -> Case:
    return Case(event=RECV, state="ESTABLISHED", pid=100, comm="app", flags=frozenset({"connected"}),
                laddr="10.0.0.1", lport=40000, raddr="10.0.0.2", rport=8080, idle_s=400.0, trigger=True,
                peer_local=False, runtime=runtime)


@pytest.mark.parametrize("runtime,linger,keepalive", [
    ("java", "Java: Socket.setSoLinger(true, 0)", "Java: ExtendedSocketOptions.TCP_KEEPIDLE"),
    ("python", "Python: sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER", "Python: sock.setsockopt(socket.IPPROTO_TCP"),
    ("go", "Go: TCPConn.SetLinger(0)", "Go: net.Dialer's KeepAliveConfig"),
    ("node", "Node.js: socket.resetAndDestroy()", "Node.js: socket.setKeepAlive"),
])
def test_socket_settings_are_spelled_in_the_owners_runtime_only(runtime, linger, keepalive):
    fix = " ".join(explain_case(linger0(runtime)).fix)
    assert linger in fix and "for example" not in fix
    assert not any(f"{other}:" in fix for other in ("Java", "Python", "Go", "Node.js") if not linger.startswith(other))
    e = explain_case(stale(runtime))
    assert e.verdict is Verdict.STALE_AFTER_IDLE
    ka = next(f for f in e.fix if "TCP_KEEPIDLE" in f)
    assert keepalive in ka and "for example" not in ka


def test_an_unknown_runtime_gets_socket_settings_for_example_only():
    for fix in (explain_case(linger0()).fix, explain_case(stale()).fix):
        line = next(f for f in fix if "SO_LINGER" in f or "TCP_KEEPIDLE" in f)
        assert "(for example Java: " in line and "Go: " in line, line
