"""The bcc-style filters as a user gives them, live and in replay, against real resets.

Two lab topologies run the same refused connect (the client's connect meets the server
kernel's reset: connection_refused in the client's namespace, port_closed in the server's), so
every filter has events on both sides of it. Live runs start the real CLI (one compile each).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tests.lab.driver import spawn_peer
from tests.lab.netns import NETNS_DIR, Topology
from tests.scenario.test_cli import start, stop

pytestmark = pytest.mark.scenario


@contextlib.contextmanager
def two_labs():
    with Topology.pair() as a, Topology.pair() as b:
        yield a, b


def refuse(topo: Topology, name: str = "tte-client", port: int = 9, v6: bool = False) -> None:
    host = topo.server.v6 if v6 else topo.server.v4
    spawn_peer(topo, topo.client, name, f"connect host={host} port={port}").finish()


def events(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def summary(err: str) -> dict:
    return json.loads(err.strip().splitlines()[-1])


def replay(path: str, *args: str) -> list[dict]:
    r = subprocess.run([sys.executable, "-m", "tracer.cli", "replay", path, "--json", *args], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return events(r.stdout)


def test_live_netns_by_name_inode_and_path_in_the_kernel(tmp_path):
    with two_labs() as (a, b):
        ns = {"a.client": a.netns_inode(a.client), "a.server": a.netns_inode(a.server),
              "b.client": b.netns_inode(b.client), "b.server": b.netns_inode(b.server)}
        p, _ = start(tmp_path, "--json", "--netns", f"{a.client.name},{ns['b.server']}",
                     "--netns", os.path.join(NETNS_DIR, b.client.name))
        refuse(a)
        refuse(b)
        time.sleep(0.5)
        out, err = stop(p)
    got = {(e["netns"], e["verdict"]) for e in events(out)}
    assert got == {(ns["a.client"], "connection_refused"), (ns["b.client"], "connection_refused"),
                   (ns["b.server"], "port_closed")}
    # a.server's reset was dropped in the kernel, not after the explainer
    assert summary(err)["filtered"] >= 1


def test_replay_netns_resolves_names_the_recording_kept(tmp_path):
    rec = str(tmp_path / "run.jsonl")
    p, _ = start(tmp_path, "--json", "--record", rec)
    with two_labs() as (a, b):
        server_a, server_b = a.netns_inode(a.server), b.netns_inode(b.server)
        name_a = a.server.name
        refuse(a)
        refuse(b)
        time.sleep(0.5)
    out, _ = stop(p)
    everything = events(out)
    assert not os.path.exists(os.path.join(NETNS_DIR, name_a))       # gone: only the recording knows it
    by_name = replay(rec, "--netns", name_a)
    assert by_name == [e for e in everything if e["netns"] == server_a]
    assert [e["verdict"] for e in by_name] == ["port_closed"]
    both = replay(rec, "--netns", f"{server_a},{server_b}")
    assert [e for e in everything if e["netns"] in (server_a, server_b)] == both and len(both) == 2


def test_netns_that_does_not_exist_is_a_usage_error():
    r = subprocess.run([sys.executable, "-m", "tracer.cli", "--netns", "tte-no-such-ns", "--duration", "1"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no such network namespace" in r.stderr and "ip netns list" in r.stderr
