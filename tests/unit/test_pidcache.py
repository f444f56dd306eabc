"""The per-pid cache behind the owner's uid and cgroup (tracer/kernel/pidcache.py)."""

from __future__ import annotations

import pytest

from tracer.kernel.uids import UidResolver

pytestmark = pytest.mark.unit


class FakeStatus:
    def __init__(self) -> None:
        self.uids: dict[int, int] = {}
        self.t = 0.0

    def read(self, pid: int):
        return self.uids.get(pid)


def test_uid_is_kept_after_exit_reread_after_the_ttl_and_final_when_never_read():
    proc = FakeStatus()
    proc.uids[5] = 1000
    r = UidResolver(read=proc.read, clock=lambda: proc.t, ttl_s=10)
    assert r.uid(5, 100) == 1000 and r.uid(5, 200) == 1000 and r.reads == 1
    proc.uids[5] = 33                      # the pid was reused by another user's process
    proc.t = 11
    assert r.uid(5, 300) == 33 and r.reads == 2
    del proc.uids[5]                       # gone: what was known while it lived stays
    proc.t = 30
    assert r.uid(5, 400) == 33
    assert r.uid(7, 500) is None and r.uid(7) is None and r.reads == 4   # never read: None, not re-read
    assert r.uid(None) is None and r.uid(0) is None
    assert r.seen == {5: 33}
    # The recording keeps both owners of pid 5, each from when it was seen.
    assert r.history.to_json() == {"5": [[100, 1000], [300, 33]]}


def test_uid_cache_is_bounded():
    proc = FakeStatus()
    proc.uids.update({pid: pid for pid in range(1, 50)})
    r = UidResolver(read=proc.read, clock=lambda: proc.t, limit=10)
    for pid in range(1, 50):
        r.prime(pid)
    assert len(r._cache) == 10 and r._cache.evicted == 39
