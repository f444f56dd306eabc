"""The command line as a user meets it: live JSON and console, replay, and every bad input.

Each live test starts the real CLI (one compile per test, by necessity of a separate process);
the capture tests share one compiled program (conftest `capture`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import jsonschema
import pytest

from tests.conftest import REPO
from tests.lab.driver import spawn_peer
from tests.lab.timing import wait
from tests.lab.scenarios import BY_NAME

pytestmark = pytest.mark.scenario
SCHEMA = os.path.join(REPO, "docs", "schema", "event.schema.json")


def cli(*args, env=None, timeout=60, wrap=None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tracer.cli", *args]
    if wrap:
        cmd = wrap + cmd
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


def start(tmp_path, *args) -> tuple[subprocess.Popen, str]:
    ready = str(tmp_path / f"ready-{time.monotonic_ns()}")
    p = subprocess.Popen([sys.executable, "-m", "tracer.cli", "--ready-file", ready, *args], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(ready):
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            raise AssertionError(f"tracer did not get ready: {p.communicate()}")
        time.sleep(0.1)
    return p, ready


def stop(p: subprocess.Popen) -> tuple[str, str]:
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    return out, err


def act(name: str) -> dict:
    sc = BY_NAME[name]
    with sc.topology() as topo:
        truth = sc.act(topo, spawn_peer)
        time.sleep(0.5)
    return truth


def test_json_output_validates_and_replay_gives_the_same_explanations(tmp_path):
    rec = str(tmp_path / "run.jsonl")
    p, _ = start(tmp_path, "--json", "--record", rec)
    act("unread_close")
    act("closed_port")
    out, err = stop(p)
    with open(SCHEMA, encoding="utf-8") as fh:
        validator = jsonschema.Draft202012Validator(json.load(fh))
    events = [json.loads(line) for line in out.splitlines()]   # nothing but JSON on stdout
    for e in events:
        validator.validate(e)
    mine = {(e["verdict"], e["comm"]) for e in events}
    assert ("closed_with_unread_data", "tte-server") in mine and ("peer_abort", "tte-client") in mine
    assert ("connection_refused", "tte-client") in mine and ("port_closed", None) in mine
    assert json.loads(err.strip().splitlines()[-1])["lost"] == 0

    again = cli("replay", rec, "--json")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == out.splitlines()


def test_a_namespace_inode_the_kernel_reuses_names_each_event_by_its_own_lab(tmp_path):
    # The kernel hands a deleted namespace's inode to the next one made: two labs in a row get
    # the same client inode. Each event keeps the name of the lab it came from, live and replay.
    rec = str(tmp_path / "run.jsonl")
    p, _ = start(tmp_path, "--json", "--record", rec)
    labs = []
    for _ in range(2):
        sc = BY_NAME["closed_port"]
        with sc.topology() as topo:
            labs.append((topo.client.name, topo.netns_inode(topo.client)))
            sc.act(topo, spawn_peer)
            time.sleep(0.5)
        time.sleep(0.5)        # the namespace is freed, its inode free for the next one
    out, _ = stop(p)
    if labs[0][1] != labs[1][1]:
        pytest.skip(f"the kernel gave the second lab another inode ({labs}): nothing to tell apart")
    mine = [json.loads(line) for line in out.splitlines()]
    mine = [e for e in mine if e["netns"] == labs[0][1] and e["comm"] == "tte-client"]
    assert [e["netns_name"] for e in mine] == [labs[0][0], labs[1][0]], mine
    again = cli("replay", rec, "--json")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == out.splitlines()
    picked = cli("replay", rec, "--json", "--netns", labs[0][0])
    assert picked.returncode == 0, picked.stderr
    assert len([line for line in picked.stdout.splitlines() if '"tte-client"' in line]) == 2   # one inode


def test_live_console_in_a_terminal_shows_verdict_pid_and_idle():
    from tests.lab.transcript import live_console

    # the lab's namespaces only: the machine's other work must not push the events off the screen
    t = live_console("nat_idle", own_netns=True)
    pid_line = [line for line in t.screen.splitlines() if "tte-scheduler (pid" in line]
    assert pid_line, t.screen
    assert "stale_after_idle" in t.screen and "idle 4.0 s" in t.screen
    assert "Summary:" in t.final and "The one fix" in t.final


def test_traced_process_exit_ends_the_run_with_a_summary(tmp_path):
    victim = subprocess.Popen(["sleep", "60"])
    p, _ = start(tmp_path, "--pid", str(victim.pid))
    victim.kill()
    victim.wait()
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert f"traced process {victim.pid} exited" in out and "Summary:" in out


def test_escape_sequences_and_markup_in_process_names_stay_inert(tmp_path):
    evil = "\x1b]0;pwn\x07[b]x"          # an OSC title change, a bell, rich markup: 14 bytes
    p, _ = start(tmp_path, "--no-color")
    from tests.lab.netns import Topology

    with Topology.pair() as topo:
        cl = spawn_peer(topo, topo.client, evil, f"connect host={topo.server.v4} port=9")
        cl.finish()
        time.sleep(0.5)
    out, _ = stop(p)
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b]0;pwn\\x07[b]x" in out          # shown escaped, markup literal

    p, _ = start(tmp_path, "--json")
    with Topology.pair() as topo:
        cl = spawn_peer(topo, topo.client, evil, f"connect host={topo.server.v4} port=9")
        cl.finish()
        time.sleep(0.5)
    out, _ = stop(p)
    assert "\x1b" not in out
    assert evil in [json.loads(line)["comm"] for line in out.splitlines()]


# ------------------------------------------------------------------ bad input ------------

def test_not_root():
    r = cli("--duration", "1", wrap=["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
    assert r.returncode == 3, r
    assert "needs root, or CAP_BPF and CAP_PERFMON" in r.stderr and "fix:" in r.stderr
    assert "Traceback" not in r.stderr


def test_bcc_missing():
    code = ("import sys; sys.modules['bcc'] = None; from tracer.cli import main; "
            "sys.exit(main(['--duration', '1']))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 4 and "BCC Python module cannot be imported" in r.stderr
    assert "never 'pip install bcc'" in r.stderr and "Traceback" not in r.stderr


def in_private_mounts(prepare: str) -> list[str]:
    """Run the command in a private mount namespace after `prepare` (mounts changed there are
    invisible to the rest of the machine)."""
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", f'{prepare}; exec "$0" "$@"']


def test_headers_missing():
    r = cli("--duration", "1", wrap=in_private_mounts("mount -t tmpfs none /lib/modules"))
    assert r.returncode == 5, r.stderr
    assert "kernel headers for BCC are missing" in r.stderr and "scripts/setup.sh" in r.stderr


def test_tracefs_not_mounted():
    r = cli("--duration", "1", wrap=in_private_mounts(
        "umount /sys/kernel/debug/tracing 2>/dev/null; umount /sys/kernel/debug 2>/dev/null; "
        "umount /sys/kernel/tracing 2>/dev/null"))
    assert r.returncode == 6, r.stderr
    assert "tracefs is not mounted" in r.stderr and "mount -t tracefs nodev /sys/kernel/tracing" in r.stderr


def test_pid_that_does_not_exist():
    r = cli("--pid", "4194303", "--duration", "1")
    assert r.returncode == 9 and "no process with pid 4194303" in r.stderr


@pytest.mark.parametrize("args, text", [
    (["--port", "70000"], "70000"),
    (["--ringbuf-pages", "3"], "power of two"),
    (["--remote", "not-an-address"], "not an address or CIDR"),
    (["--comm", "a-name-longer-than-15"], "1-15 bytes"),
    (["--duration", "-1"], "-1"),
])
def test_invalid_option_values_are_usage_errors(args, text):
    r = cli(*args)
    assert r.returncode == 2 and text in r.stderr and "Traceback" not in r.stderr


def test_bad_recording(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("hello\n")
    r = cli("replay", str(bad))
    assert r.returncode == 10 and "not a JSON line" in r.stderr


def test_doctor_reports_ready_here():
    r = cli("doctor")
    assert r.returncode == 0, r.stdout
    assert "ready to trace" in r.stdout and "tcp:tcp_send_reset" in r.stdout
    assert "the socket's own timestamps" in r.stdout
    assert "owners of accepted sockets: holder's close, else /proc (root)" in r.stdout


def test_version_lists_bcc_kernel_and_features():
    r = cli("--version")
    assert r.returncode == 0 and "bcc 0." in r.stdout and os.uname().release in r.stdout
    assert "reset reasons" in r.stdout


def test_kernel_out_rsts_beside_the_tools_count_where_not_every_reset_is_traced(tmp_path):
    """Before 6.10 a refused connect's reset (sent with no socket) is untraced: the summary gives
    the kernel's OutRsts delta of the tracer's network namespace beside the tool's count."""
    from tests.lab import kernel
    ns = f"tte-outrsts-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        ready = str(tmp_path / "ready")
        # nsenter, not `ip netns exec`: that one remounts /sys, without tracefs.
        p = subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}", sys.executable, "-m", "tracer.cli", "--json",
                              "--ready-file", ready], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + wait(60)
        while not os.path.exists(ready):
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()
            time.sleep(0.1)
        refuse = ("import socket\nfor _ in range(3):\n    try:\n        socket.create_connection(('127.0.0.1', 9), 2)\n"
                  "    except ConnectionRefusedError:\n        pass\n    else:\n        raise SystemExit('port 9 answered')\n")
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", refuse], check=True, timeout=wait(30))
        time.sleep(0.5)
        out, err = stop(p)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    summary = json.loads(err.strip().splitlines()[-1])
    refused = [e for e in map(json.loads, out.splitlines()) if e["verdict"] == "connection_refused"]
    assert len(refused) == 3
    if kernel.traces_every_reset():
        assert summary["kernel_out_rsts"] is None
        assert len([e for e in map(json.loads, out.splitlines()) if e["verdict"] == "port_closed"]) == 3
    else:
        assert (summary["kernel_out_rsts"], summary["explained_sent_here"]) == (3, 0)


def test_a_load_faster_than_the_explainer_keeps_it_streaming_and_every_record_counted(tmp_path):
    # Refused connects for a few seconds, faster than user space explains them. The kernel's
    # ring is never empty then: one poll used to read it for as long as the load lasted, piling
    # the records up in memory, printing nothing until the load stopped and leaving SIGTERM
    # waiting for the backlog. Now each poll takes a bounded batch and the rest waits in the
    # ring (whose overflow the kernel counts as lost).
    import threading

    from tests.lab.loopback import refused_for
    from tests.lab.netns import Topology

    with Topology.pair() as topo:
        rec = str(tmp_path / "run.jsonl")
        p, _ = start(tmp_path, "--json", "--netns", topo.client.name, "--storm-limit", "1000000",
                     "--ringbuf-pages", "4096", "--record", rec)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(p.stdout), daemon=True)
        reader.start()
        sent = refused_for(topo.client, topo.server.v4, 9, seconds=6, limit=100_000)
        during = len(lines)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
        reader.join(timeout=10)
        err = p.stderr.read()
    assert p.returncode == 0, err
    assert during > 0, "no event reached the output while the load went on"
    summary = json.loads(err.strip().splitlines()[-1])
    in_file = sum(1 for line in open(rec, encoding="utf-8") if line.startswith('{"r"'))
    # every record the kernel wrote is in the recording (read), still in the ring at exit, or lost
    assert summary["records"] == in_file + summary["unread"], summary
    # in the client's namespace each refused connect is a reset received and an abort
    assert summary["records"] + summary["lost"] == 2 * sent, (summary, sent)
    assert summary["summary"]["by_verdict"]["connection_refused"] == len(lines) > 0
