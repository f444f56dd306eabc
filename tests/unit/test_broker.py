"""The /proc broker answers a fixed, validated set of queries and nothing else."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from tracer.kernel import broker


@pytest.mark.parametrize("req", [
    None, [], "holders", {"op": 1}, {"op": "shell", "cmd": "id"},
    {"op": "read", "pid": 1, "file": "../../etc/shadow"},
    {"op": "read", "pid": 1, "file": "environ"},
    {"op": "read", "pid": "1/../../etc", "file": "maps"},
    {"op": "read", "pid": True, "file": "maps"},
    {"op": "read", "pid": 0, "file": "maps"},
    {"op": "read", "pid": 1 << 23, "file": "maps"},
    {"op": "read", "pid": 1.0, "file": "maps"},
    {"op": "exe", "pid": 1, "extra": 1},
    {"op": "exe"},
    {"op": "holders", "pids": [1] * (broker.MAX_PIDS + 1), "inodes": [1]},
    {"op": "holders", "pids": [1], "inodes": "1"},
    {"op": "holders", "pids": [1], "inodes": [-1]},
    {"op": "local_addrs", "netns_dir": "/etc"},
])
def test_malformed_or_unknown_queries_are_refused(req):
    with pytest.raises(broker.BrokerError):
        broker.answer(req)


def test_queries_about_this_process():
    me = os.getpid()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        ino = os.fstat(s.fileno()).st_ino
        assert ino in broker.answer({"op": "inodes", "pid": me})
        got = broker.answer({"op": "holders", "pids": [me], "inodes": [ino]})
        assert got["found"] == {str(ino): [me, open("/proc/self/comm").read().strip()]} and got["walks"] == 1
    assert broker.answer({"op": "exe", "pid": me}) == os.readlink("/proc/self/exe")
    assert "Uid:" in broker.answer({"op": "read", "pid": me, "file": "status"})
    assert broker.answer({"op": "read", "pid": 4_000_000, "file": "maps"}) is None   # no such process


def test_the_wire_protocol_refuses_oversized_and_non_json_requests():
    a, b = broker.pair()
    t = threading.Thread(target=broker.serve, args=(b,), daemon=True)
    t.start()
    client = broker.Client(a, pid=-1)
    assert client.exe(os.getpid()) == os.readlink("/proc/self/exe")
    bads = [b"not json", b"[" * 50_000 + b"]" * 50_000]
    if os.geteuid() == 0:      # buffers past net.core.wmem_max need root (SO_SNDBUFFORCE)
        bads.append(b"x" * (broker.MAX_REQUEST + 10))
    for bad in bads:
        a.send(bad)
        assert b'"error"' in a.recv(1 << 16)
    a.close()
    t.join(5)
    assert not t.is_alive()
    b.close()
