"""The privilege drop, measured on the real tracer: after start-up the live run and the exporter
are user nobody with no capabilities, yet still read their ring buffer and maps; an accepted
socket's holder that only a /proc walk finds is still found (through the /proc broker)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from tests.conftest import REPO
from tests.lab.driver import ready as ready_file_done
from tests.lab.netns import Topology, in_netns
from tests.scenario.test_exporter_http import connect_refused_as, free_port, get, running_exporter

pytestmark = pytest.mark.scenario
NOBODY = 65534
CAP_SETS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


def status(path: str) -> dict[str, str]:
    with open(f"{path}/status", encoding="ascii") as fh:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in fh)}


def assert_unprivileged(pid: int) -> dict[str, str]:
    """Every thread: uid and gid nobody/nogroup (real, effective, saved, fs), no supplementary
    groups, every capability set empty, no_new_privs."""
    threads = os.listdir(f"/proc/{pid}/task")
    for tid in threads:
        st = status(f"/proc/{pid}/task/{tid}")
        assert st["Uid"].split() == [str(NOBODY)] * 4, (tid, st["Uid"])
        assert st["Gid"].split() == [str(NOBODY)] * 4, (tid, st["Gid"])
        assert st["Groups"] == ""
        assert {k: int(st[k], 16) for k in CAP_SETS} == dict.fromkeys(CAP_SETS, 0), (tid, st)
        assert st["NoNewPrivs"] == "1"
    return status(f"/proc/{pid}")


def start_live(*args: str) -> tuple[subprocess.Popen, int, str]:
    d = tempfile.mkdtemp(prefix="tte-priv-")     # 0700, root's: the ready file is created before the drop
    ready = os.path.join(d, "ready")
    p = subprocess.Popen([sys.executable, "-m", "tracer.cli", "--json", "--ready-file", ready, *args], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return p, wait_ready(p, ready), d


def wait_ready(p: subprocess.Popen, ready: str) -> int:
    """The tracer's pid from its --ready-file, once it is attached and has dropped privileges."""
    deadline = time.monotonic() + 90
    while not ready_file_done(ready):
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            raise AssertionError(f"tracer did not start: {p.communicate()}")
        time.sleep(0.1)
    return int(open(ready).read())


def test_live_run_drops_to_nobody_and_still_reads_ring_buffer_and_maps():
    closed = free_port()
    p, pid, _ = start_live("--port", str(closed), "--duration", "6")
    st = assert_unprivileged(pid)
    print(f"\nlive: Uid {st['Uid']}  CapEff {st['CapEff']}  CapBnd {st['CapBnd']}")
    connect_refused_as(b"priv-client", closed, times=3)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    # the ring buffer, read after the drop: the client's three refused connects
    refused = [e for e in events if e["comm"] == "priv-client" and e["event"] == "reset_received"]
    assert len(refused) == 3, [(e["event"], e["comm"], e["verdict"]) for e in events]
    # the maps, read after the drop: the summary's kernel counters
    summary = json.loads(err.strip().splitlines()[-1])
    assert summary["records"] >= 6 and summary["lost"] == 0, summary
    # the programs' own counters too (bpf_obj_get_info_by_fd on descriptors it holds)
    assert isinstance(summary["missed"], int), summary
    assert len(summary["missed_by"]) + len(summary["missed_uncounted"]) >= 5, summary


def test_exporter_drops_to_nobody_and_still_reads_its_maps():
    closed = free_port()
    with running_exporter("--port", str(closed)) as exp:
        st = assert_unprivileged(exp.p.pid)
        print(f"\nexporter: Uid {st['Uid']}  CapEff {st['CapEff']}  threads {exp.threads()}")

        def sent(text: str) -> float:
            return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith('tcptrace_resets_total{direction="sent"'))

        before = sent(get(exp.port)[1])
        connect_refused_as(b"priv-exp", closed, times=4)
        # the map counters move at once; the explained series after the ring buffer is read and
        # the correlator has settled the records: wait for both
        deadline = time.monotonic() + 10
        text = get(exp.port)[1]
        while (sent(text) - before < 4 or 'comm="priv-exp"' not in text) and time.monotonic() < deadline:
            time.sleep(0.2)
            text = get(exp.port)[1]
        assert sent(text) - before == 4          # kernel-map counters, read at scrape time
        assert 'comm="priv-exp"' in text          # explained from the ring buffer
        assert_unprivileged(exp.p.pid)            # the HTTP threads too
        assert "Traceback" not in exp.stderr()


def test_no_drop_privileges_keeps_root():
    p, pid, _ = start_live("--port", str(free_port()), "--duration", "2", "--no-drop-privileges")
    assert status(f"/proc/{pid}")["Uid"].split()[0] == "0"
    p.communicate(timeout=60)
    assert p.returncode == 0


def test_an_unknown_user_is_a_usage_error_before_anything_is_built():
    p = subprocess.run([sys.executable, "-m", "tracer.cli", "--user", "no-such-user-here", "--duration", "1"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "no such user" in p.stderr, p.stderr


HOLDER = """
import os, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 8080))
s.listen(8)
print(os.getpid(), flush=True)
sys.stdin.readline()                 # the tracer is up: accept in a child
child = os.fork()
if child == 0:
    c, _ = s.accept()
    print(os.getpid(), flush=True)
    time.sleep(4)                    # holds the reset socket: its close comes too late to wait for
    c.close()
    os._exit(0)
os.waitpid(child, 0)
"""


def test_an_owner_found_by_the_proc_walk_is_still_right_after_the_drop():
    """Another user's (daemon's) pre-forked server: the listener predates the tracer, a child
    accepts, the client resets, the child keeps the socket. Only a walk of the child's
    /proc/<pid>/fd finds it, which user nobody may not do (shown below); the tracer, as nobody,
    still names the child: the broker walked."""
    with Topology.pair() as topo:
        srv = topo.popen(topo.server, ["setpriv", "--reuid=daemon", "--regid=daemon", "--clear-groups",
                                       sys.executable, "-c", HOLDER, topo.server.v4],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        parent = int(srv.stdout.readline())
        p, pid, _ = start_live("--netns", str(topo.netns_inode(topo.server)), "--duration", "8")
        assert_unprivileged(pid)
        srv.stdin.write("go\n")
        srv.stdin.flush()
        with in_netns(topo.client):
            c = socket.socket()
        c.settimeout(5)
        c.connect((topo.server.v4, 8080))
        child = int(srv.stdout.readline())
        # what the tracer's user could see of the child's sockets by itself: nothing
        alone = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
                                "-c", f"from tracer.kernel import procfs; print(len(procfs.direct_socket_inodes({child})))"],
                               cwd=REPO, capture_output=True, text=True, timeout=30)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()
        out, err = p.communicate(timeout=60)
        srv.wait(timeout=10)
    assert p.returncode == 0, err
    assert alone.stdout.strip() == "0", alone
    got = [json.loads(line) for line in out.splitlines()]
    received = [e for e in got if e["event"] == "reset_received" and e["lport"] == 8080]
    assert len(received) == 1, got
    (e,) = received
    assert e["pid"] == child and child != parent
    assert "(found holding the socket in /proc)" in " ".join(e["evidence"]), e


BROKER_CHECK = """
import json, os, sys
from tracer.kernel import broker, privileges, procfs
pid = int(sys.argv[1])
client = broker.start(65534, 65534)
procfs.route_through(client)
privileges.become(65534, 65534)
try:
    os.readlink(f"/proc/{pid}/exe")
    alone = "readable"
except PermissionError:
    alone = "denied"
print(json.dumps({"alone": alone, "exe": procfs.exe(pid), "maps": procfs.mapped_files(pid),
                  "go": procfs.go_build_version(pid), "uid": os.getuid(), "failures": client.failures}))
"""


def test_the_broker_reads_another_users_exe_and_maps_for_an_unprivileged_tracer():
    victim = subprocess.Popen(["setpriv", "--reuid=daemon", "--regid=daemon", "--clear-groups", "sleep", "30"])
    try:
        time.sleep(0.3)
        p = subprocess.run([sys.executable, "-c", BROKER_CHECK, str(victim.pid)], cwd=REPO, capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        got = json.loads(p.stdout)
        want_exe = os.readlink(f"/proc/{victim.pid}/exe")
    finally:
        victim.kill()
        victim.wait()
    assert got["uid"] == NOBODY and got["alone"] == "denied"
    assert got["exe"] == want_exe and want_exe in got["maps"] and got["go"] is None and got["failures"] == 0


FALLBACK = r"""
import ctypes, json, os, sys
sys.path.insert(0, sys.argv[1])
from tracer.kernel import privileges

libc = ctypes.CDLL(None, use_errno=True)


def new_map():
    # BPF_MAP_CREATE (0) of a 1-entry array (type 2): with unprivileged_bpf_disabled set, this
    # needs CAP_BPF, like the probe's real use of maps would on a kernel where the drop breaks it.
    attr = (ctypes.c_uint32 * 32)(2, 4, 4, 1)
    fd = libc.syscall(321, 0, ctypes.byref(attr), ctypes.sizeof(attr))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "BPF_MAP_CREATE")
    os.close(fd)


d = privileges.drop("nobody", new_map)
st = privileges.status_fields()
print(json.dumps({"keep": list(d.kept), "said": d.describe(), "uid": st["Uid"], "eff": st["CapEff"], "prm": st["CapPrm"]}))
"""


def test_where_unprivileged_maps_fail_the_drop_keeps_cap_bpf_alone():
    # The drop's fallback, on the real kernel: its probe (a forked child that drops first, then
    # uses the maps) fails, so the process becomes nobody with CAP_BPF only, and the use that
    # failed then works. Here the "use" needs CAP_BPF (a map created with
    # unprivileged_bpf_disabled set), which is what the probe stands for on older kernels.
    with open("/proc/sys/kernel/unprivileged_bpf_disabled", encoding="ascii") as fh:
        if fh.read().strip() == "0":
            pytest.skip("unprivileged BPF is enabled here: the probe cannot fail")
    r = subprocess.run([sys.executable, "-c", FALLBACK, REPO], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    cap_bpf = 39
    assert got["keep"] == [cap_bpf] and "keeping CAP_BPF" in got["said"], got
    assert got["uid"].split() == [str(NOBODY)] * 4
    assert int(got["eff"], 16) == int(got["prm"], 16) == 1 << cap_bpf


def test_a_uid_other_than_0_with_capabilities_only_traces_and_attributes():
    # README: root, or CAP_BPF + CAP_PERFMON (+ CAP_DAC_READ_SEARCH for tracefs) for another
    # uid, given to the tool alone (a systemd unit's AmbientCapabilities=). capsh does that here.
    import shutil

    from tests.lab.loopback import closed_port, refused

    capsh = shutil.which("capsh") or "/usr/sbin/capsh"
    port = closed_port()
    d = tempfile.mkdtemp(prefix="tte-caps-")
    os.chmod(d, 0o777)
    ready = os.path.join(d, "ready")
    caps = "cap_bpf,cap_perfmon,cap_sys_ptrace,cap_dac_read_search"
    inner = (f"cd {REPO} && exec {sys.executable} -m tracer.cli --json --port {port} --ready-file {ready}")
    p = subprocess.Popen([capsh, f"--caps={caps},cap_setuid,cap_setgid,cap_setpcap+eip", "--keep=1", "--user=nobody",
                          f"--addamb={caps}", "--", "-c", inner], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        tracer_pid = wait_ready(p, ready)
        st = status(f"/proc/{tracer_pid}")
        assert st["Uid"].split()[1] == str(NOBODY) and int(st["CapEff"], 16) != 0, st
        refused(port)
        time.sleep(1.0)
    finally:
        p.terminate()
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    mine = [e for e in events if e["verdict"] == "connection_refused"]
    assert len(mine) == 1 and mine[0]["pid"] == os.getpid(), (events, err)
