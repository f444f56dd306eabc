"""Container, pod and systemd-unit attribution against real processes in real cgroups.

Each case is a real process moved (cgroup.procs) into a cgroup v2 directory this test creates
with the nesting a runtime or the kubelet makes, inside a throwaway directory under the v2
mount; its refused connect is a real reset, traced by the real CLI, whose JSON must name the
workload. Namespaces are the lab's named ones (`ip netns`), so the same events carry the name.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from typing import Iterator

import pytest

from tests.conftest import REPO
from tests.lab.netns import Topology
from tests.scenario.test_cli import start, stop

pytestmark = [pytest.mark.scenario,
              pytest.mark.skipif(os.geteuid() != 0, reason="creating cgroups and namespaces needs root")]

CID = secrets.token_hex(32)
UID = "6b1f0e2a-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
ESC = UID.replace("-", "_")
# relative cgroup path -> the fields the event must carry
LAYOUTS = {
    "system.slice/nginx.service":
        dict(unit="nginx.service", slice="system.slice", container_runtime=None, container_id=None, pod_uid=None),
    "user.slice/user-1000.slice/session-7.scope":
        dict(unit="session-7.scope", slice="user-1000.slice", container_id=None, pod_uid=None),
    f"system.slice/docker-{CID}.scope":
        dict(unit=f"docker-{CID}.scope", container_runtime="docker", container_id=CID, pod_uid=None),
    f"docker/{CID}": dict(unit=None, container_runtime="docker", container_id=CID, pod_uid=None),
    f"machine.slice/libpod-{CID}.scope": dict(container_runtime="podman", container_id=CID, pod_uid=None),
    f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{ESC}.slice/cri-containerd-{CID}.scope":
        dict(container_runtime="containerd", container_id=CID, pod_uid=UID, pod_qos="burstable"),
    f"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{ESC}.slice/crio-{CID}.scope":
        dict(container_runtime="cri-o", container_id=CID, pod_uid=UID, pod_qos="besteffort"),
    f"kubepods.slice/kubepods-pod{ESC}.slice/crio-{CID}.scope":
        dict(container_runtime="cri-o", container_id=CID, pod_uid=UID, pod_qos="guaranteed"),
    f"kubepods/burstable/pod{UID}/{CID}":
        dict(container_runtime=None, container_id=CID, pod_uid=UID, pod_qos="burstable"),
}
# The child: join its cgroup (before `ip netns exec`, which remounts /sys), then on "go" connect
# to a closed port of the server namespace (a real RST), say so, and exit on "exit".
CHILD = r"""
import socket, sys
dst, port = sys.argv[1], int(sys.argv[2])
sys.stdin.readline()
s = socket.socket()
try:
    s.connect((dst, port))
except ConnectionRefusedError:
    print("refused", flush=True)
sys.stdin.readline()
"""


def v2_mount() -> str:
    with open("/proc/mounts", encoding="utf-8") as fh:
        for line in fh:
            f = line.split()
            if f[2] == "cgroup2":
                return f[1]
    pytest.skip("no cgroup v2 hierarchy mounted")


@contextlib.contextmanager
def cgroup_tree(rels: list[str]) -> Iterator[tuple[str, str]]:
    """(v2 mount, the test's top directory name): every rel made below it; removed at the end."""
    root = v2_mount()
    top = f"tte-cgtest-{secrets.token_hex(4)}"
    made: list[str] = []
    try:
        for rel in rels:
            parts = [top, *rel.split("/")]
            for i in range(1, len(parts) + 1):
                d = os.path.join(root, *parts[:i])
                if not os.path.isdir(d):
                    os.mkdir(d)
                    made.append(d)
        yield root, top
    finally:
        for d in sorted(made, key=lambda p: p.count("/"), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(d)


def lab_only(topo: Topology) -> list[str]:
    """Only the lab's namespaces: the host's own traffic on the same ports stays out."""
    return ["--netns", f"{topo.client.name},{topo.server.name}"]


def spawn_in(topo: Topology, cg_dir: str, port: int) -> subprocess.Popen:
    script = (f"echo $$ > {cg_dir}/cgroup.procs && exec ip netns exec {topo.client.name} "
              f"{sys.executable} -c '{CHILD}' {topo.server.v4} {port}")
    return subprocess.Popen(["sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def refuse(p: subprocess.Popen) -> None:
    assert p.stdin is not None and p.stdout is not None
    p.stdin.write("go\n")
    p.stdin.flush()
    assert p.stdout.readline().strip() == "refused"


def finish(p: subprocess.Popen) -> None:
    assert p.stdin is not None
    p.stdin.write("exit\n")
    p.stdin.close()
    p.wait(timeout=10)


def by_port(out: str) -> dict[int, list[dict]]:
    got: dict[int, list[dict]] = {}
    for line in out.splitlines():
        e = json.loads(line)
        got.setdefault(e["rport"] if e["event"] == "reset_received" else e["lport"], []).append(e)
    return got


def test_each_runtime_layout_names_the_owner_workload(tmp_path):
    rels = list(LAYOUTS)
    ports = {rel: 47000 + i for i, rel in enumerate(rels)}
    with cgroup_tree(rels) as (root, top), Topology.pair() as topo:
        args = ["--json", *lab_only(topo)] + [a for p in ports.values() for a in ("--port", str(p))]
        tracer, _ = start(tmp_path, *args)
        children = {rel: spawn_in(topo, os.path.join(root, top, rel), ports[rel]) for rel in rels}
        try:
            for p in children.values():
                refuse(p)
            time.sleep(0.5)
        finally:
            out, err = stop(tracer)   # the children still live: their cgroups are readable
            for p in children.values():
                finish(p)
    events = by_port(out)
    for rel in rels:
        got = events.get(ports[rel], [])
        received = [e for e in got if e["event"] == "reset_received"]
        assert len(received) == 1, (rel, got, err)
        e = received[0]
        assert e["pid"] == children[rel].pid
        assert e["cgroup"] == f"/{top}/{rel}" and e["cgroup_status"] == "known"
        for k, v in LAYOUTS[rel].items():
            assert e[k] == v, (rel, k, e[k])
        assert e["netns_name"] == topo.client.name
        # the server kernel's reset had no socket, so no owner and no cgroup
        [sent] = [x for x in got if x["event"] == "reset_sent"]
        assert sent["cgroup_status"] == "no_owner" and sent["cgroup"] is None
        assert sent["netns_name"] == topo.server.name


def test_an_owner_gone_before_its_record_is_read_is_said_so(tmp_path):
    """The tracer is stopped (SIGSTOP) while the child resets and exits: when it reads the
    record, /proc/<pid> is gone, and the event says so rather than guessing."""
    rel = f"system.slice/docker-{CID}.scope"
    with cgroup_tree([rel]) as (root, top), Topology.pair() as topo:
        tracer, _ = start(tmp_path, "--json", *lab_only(topo), "--port", "47999")
        keep = spawn_in(topo, os.path.join(root, top, rel), 47999)
        gone = spawn_in(topo, os.path.join(root, top, rel), 47999)
        try:
            refuse(keep)
            time.sleep(0.5)                       # read and attributed while it lives
            os.kill(tracer.pid, signal.SIGSTOP)
            refuse(gone)
            finish(gone)                          # exited and reaped before the tracer runs again
        finally:
            os.kill(tracer.pid, signal.SIGCONT)
            time.sleep(0.5)
            out, err = stop(tracer)
            finish(keep)
    received = {e["pid"]: e for e in json.loads("[" + ",".join(out.splitlines()) + "]")
                if e["event"] == "reset_received"}
    assert received[keep.pid]["container_id"] == CID, err
    g = received[gone.pid]
    assert g["cgroup_status"] == "process_gone" and g["cgroup"] is None and g["container_id"] is None


def test_replay_gives_the_cgroups_the_live_run_saw(tmp_path):
    rel = f"kubepods/besteffort/pod{UID}/{CID}"
    rec = str(tmp_path / "run.jsonl")
    with cgroup_tree([rel]) as (root, top), Topology.pair() as topo:
        tracer, _ = start(tmp_path, "--json", *lab_only(topo), "--port", "47998", "--record", rec)
        child = spawn_in(topo, os.path.join(root, top, rel), 47998)
        try:
            refuse(child)
            time.sleep(0.5)
        finally:
            live, _ = stop(tracer)
            finish(child)
    r = subprocess.run([sys.executable, "-m", "tracer.cli", "replay", rec, "--json"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    keys = ("pid", "event", "cgroup", "cgroup_status", "container_id", "pod_uid", "pod_qos", "netns_name")
    def pick(out: str) -> list[tuple]:
        return [tuple(json.loads(x).get(k) for k in keys) for x in out.splitlines()]
    assert pick(r.stdout) == pick(live)
    assert (child.pid, "reset_received", f"/{top}/{rel}", "known", CID, UID, "besteffort",
            topo.client.name) in pick(live)
