"""A reset storm, live and replayed: 3,000 connects refused on loopback with --storm-limit 10,
so nearly all of them are counted by the kernel instead of sent. One incident per connection
(one connection_refused and one port_closed per connect, as outside a storm), and the replay of
the recording shows the same counts: storm summaries are part of the recording."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tests.lab.driver import Tracer
from tests.lab.loopback import closed_port, refused

pytestmark = pytest.mark.scenario
CONNECTS = 3000


def summary_of(err: str) -> dict:
    return json.loads(err[err.rindex('{"summary"'):].splitlines()[0])


def test_a_storm_counts_one_incident_per_connection_live_and_in_replay(tmp_path):
    rec = tmp_path / "storm.jsonl"
    port = closed_port()
    t = Tracer(tmp_path, "--json", "--port", str(port), "--storm-limit", "10", "--record", str(rec))
    t.wait_ready(time.monotonic() + 120)
    for _ in range(CONNECTS):
        refused(port)
    time.sleep(2.5)                       # storm buckets are drained once a second
    t.p.send_signal(signal.SIGTERM)
    out, err = t.p.communicate(timeout=60)
    assert t.p.returncode == 0, err[-2000:]
    live = summary_of(err)
    assert live["summarized"] > CONNECTS          # it was a storm: most were counted in the kernel
    assert live["summary"]["by_verdict"] == {"connection_refused": CONNECTS, "port_closed": CONNECTS}
    assert live["summary"]["total"] == 2 * CONNECTS

    r = subprocess.run([sys.executable, "-m", "tracer.cli", "replay", "--json", str(rec)], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    replayed = summary_of(r.stderr)["summary"]
    assert replayed["by_verdict"] == live["summary"]["by_verdict"]
    assert replayed["summarized"] == live["summary"]["summarized"] > 0


def test_a_storm_on_a_port_above_its_clients_ports_is_keyed_by_the_closed_port(tmp_path):
    # Reset storm buckets are keyed by the service port. A reset with no socket has no table
    # entry to say which side is the service; the segment it answers does: a SYN hit this
    # host's port. Clients here bind ports below the closed one, so "the lower port" keyed
    # each reset by its client's port: the kernel's storm table took one bucket per connect
    # (filling it under a real storm), which user space could only re-key afterwards.
    port = closed_port()
    low = 20000
    assert port > low + CONNECTS, port
    t = Tracer(tmp_path, "--json", "--port", str(port), "--storm-limit", "10")
    t.wait_ready(time.monotonic() + 120)
    for i in range(CONNECTS):
        refused(port, source_port=low + i)
    time.sleep(2.5)                       # storm buckets are drained once a second
    t.p.send_signal(signal.SIGTERM)
    out, err = t.p.communicate(timeout=60)
    assert t.p.returncode == 0, err[-2000:]
    storm_lines = [line for line in err.splitlines() if line.startswith('{"insight": "reset_storm"')]
    storms = [json.loads(line) for line in storm_lines]
    sent = [b for s in storms for b in s["buckets"] if b["type"] == "reset_sent"]
    assert sent and sum(b["count"] for b in sent) > CONNECTS // 2, storms
    assert {b["port"] for b in sent} == {port}, sorted({b["port"] for b in sent})[:10]
    # one bucket per drain (once a second), not one per client port re-keyed afterwards
    assert len(sent) <= len(storms), [b["count"] for b in sent][:20]


def test_a_storm_of_remote_connects_to_a_closed_port_is_port_closed(tmp_path):
    # Another host's connects (a scanner, health checks of a removed service): traced on the
    # server's side only, so no refused connect of this host can say the resets answered SYNs;
    # the kernel's storm key does (the segment's flags).
    from tests.lab.loopback import refused_for
    from tests.lab.netns import Topology

    with Topology.pair() as topo:
        t = Tracer(tmp_path, "--json", "--netns", topo.server.name, "--storm-limit", "10")
        t.wait_ready(time.monotonic() + 120)
        done = refused_for(topo.client, topo.server.v4, 9, seconds=20, limit=CONNECTS)
        time.sleep(2.5)                       # storm buckets are drained once a second
        t.p.send_signal(signal.SIGTERM)
        out, err = t.p.communicate(timeout=60)
    assert t.p.returncode == 0, err[-2000:]
    live = summary_of(err)
    assert live["summarized"] > done // 2                 # a storm: most counted in the kernel
    assert live["summary"]["by_verdict"] == {"port_closed": done}, live["summary"]["by_verdict"]


def test_a_long_storm_never_sends_half_of_a_refused_connect(tmp_path):
    # A storm spread over many 100 ms windows: each window sends one full record per CPU and
    # counts the rest. A refused connect is a received reset and its error report on the same
    # socket, a microsecond apart: if the window's last slot went to the reset, the error
    # report was counted in a bucket (or the other way round), and the connect became two
    # incidents, one sent whole and one counted (3001 for 3000, seen once in CI). The kernel
    # now takes one decision for the pair.
    port = closed_port()
    t = Tracer(tmp_path, "--json", "--port", str(port), "--storm-limit", "10")
    t.wait_ready(time.monotonic() + 120)
    done, start = 0, time.monotonic()
    while done < 2000 and time.monotonic() - start < 20:
        refused(port)
        done += 1
        time.sleep(max(0.0, start + done * 0.001 - time.monotonic()))   # about 1 per ms: ~20 windows
    time.sleep(2.5)                       # storm buckets are drained once a second
    t.p.send_signal(signal.SIGTERM)
    out, err = t.p.communicate(timeout=60)
    assert t.p.returncode == 0, err[-2000:]
    live = summary_of(err)
    full = [json.loads(line) for line in out.splitlines() if line.startswith('{"ts"') or line.startswith('{"event"')]
    kinds = {(e.get("event"), e.get("errno")) for e in full}
    assert len(full) >= 10, (len(full), live)     # the storm was sampled in many windows
    assert kinds <= {("reset_sent", None), ("reset_received", "ECONNREFUSED")}, kinds
    assert live["summary"]["by_verdict"] == {"connection_refused": done, "port_closed": done}, (done, live)


def test_strict_exits_11_when_the_ring_buffer_lost_records(tmp_path):
    # One page of ring buffer (about 20 records) and no storm summaries: a burst of refused
    # connects outruns the reader. --strict turns the counted loss into exit status 11.
    port = closed_port()
    t = Tracer(tmp_path, "--json", "--port", str(port), "--ringbuf-pages", "1", "--storm-limit", "1000000", "--strict")
    t.wait_ready(time.monotonic() + 120)
    for _ in range(CONNECTS):
        refused(port)
    time.sleep(1.0)
    t.p.send_signal(signal.SIGTERM)
    out, err = t.p.communicate(timeout=60)
    live = summary_of(err)
    assert live["lost"] > 0, live
    assert t.p.returncode == 11, err[-2000:]
    assert f"{live['lost']} records were lost" in err and "--ringbuf-pages" in err, err[-2000:]
    assert "Traceback" not in err


def linger_closes(topo, count: int, pace_s: float) -> int:
    """SO_LINGER 0 closes of connections from the client namespace to a server in the other
    that accepts and holds them, paced; returns how many were made."""
    import socket
    import struct
    import threading

    from tests.lab.netns import in_netns

    with in_netns(topo.server):
        srv = socket.socket()
        srv.bind(("0.0.0.0", 8080))
        srv.listen(1024)
    srv.settimeout(0.5)
    held, stop = [], threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                pass

    th = threading.Thread(target=accept)
    th.start()
    done, start = 0, time.monotonic()
    try:
        with in_netns(topo.client):
            while done < count and time.monotonic() - start < 30:
                s = socket.socket()
                s.connect((topo.server.v4, 8080))
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
                done += 1
                time.sleep(max(0.0, start + done * pace_s - time.monotonic()))
    finally:
        stop.set()
        th.join(timeout=5)
        for c in held:
            c.close()
        srv.close()
    return done


def test_a_linger_storm_is_one_incident_per_connection_on_each_side(tmp_path):
    # The closer's reset and its own error report (tcp_disconnect(), process context: the
    # peer's reset and error report run in softirqs between the two on the same CPU) must take
    # one storm decision, and their buckets must join: before, each close was also an
    # 'unknown' abort, and the peer's error reports (their local port already cleared) were
    # keyed apart from its resets.
    from tests.lab.netns import Topology

    with Topology.pair() as topo:
        t = Tracer(tmp_path, "--json", "--netns", f"{topo.client.name},{topo.server.name}", "--storm-limit", "10")
        t.wait_ready(time.monotonic() + 120)
        done = linger_closes(topo, 2000, 0.001)
        time.sleep(2.5)                       # storm buckets are drained once a second
        t.p.send_signal(signal.SIGTERM)
        out, err = t.p.communicate(timeout=60)
    assert t.p.returncode == 0, err[-2000:]
    live = summary_of(err)
    assert live["summarized"] > done, live
    assert live["summary"]["by_verdict"] == {"linger_abort": done, "peer_abort": done}, (done, live)
    full = [json.loads(line) for line in out.splitlines()]
    assert len(full) >= 10
    assert {(e["event"], e.get("errno")) for e in full} <= {("reset_sent", "ECONNRESET"), ("reset_received", "ECONNRESET")}


def test_port_filter_keeps_the_error_report_of_a_socket_its_reset_cleared(tmp_path):
    # tcp_done() unhashes the socket (local port 0) before the error report; the filter took
    # the ports from the socket and dropped it: the peer's reset had no errno under --port.
    from tests.lab.netns import Topology

    with Topology.pair() as topo:
        t = Tracer(tmp_path, "--json", "--port", "8080")
        t.wait_ready(time.monotonic() + 120)
        done = linger_closes(topo, 20, 0.02)
        time.sleep(1.0)
        t.p.send_signal(signal.SIGTERM)
        out, err = t.p.communicate(timeout=60)
    assert t.p.returncode == 0, err[-2000:]
    full = [json.loads(line) for line in out.splitlines()]
    got = sorted((e["event"], e.get("errno")) for e in full)
    assert got == sorted([("reset_sent", "ECONNRESET")] * done + [("reset_received", "ECONNRESET")] * done), got
