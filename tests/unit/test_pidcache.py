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


def test_a_pid_reused_by_another_program_within_the_ttl_is_read_anew():
    """pid 5 was a curl of uid 1000; it exits, and a postgres of uid 999 gets pid 5 within the
    ttl: the postgres record must not be given curl's uid (nor its cgroup)."""
    from tracer.kernel.cgroups import CgroupResolver

    proc = FakeStatus()
    proc.uids[5] = 1000
    r = UidResolver(read=proc.read, clock=lambda: proc.t, ttl_s=30)
    assert r.uid(5, 100, "curl") == 1000
    proc.uids[5] = 999
    proc.t = 1
    assert r.uid(5, 200, "postgres") == 999 and r.reads == 2
    assert r.history.to_json() == {"5": [[100, 1000], [200, 999]]}
    assert r.uid(5, None, "curl") == 1000 and r.reads == 2    # curl's event explained late: curl's uid

    cgroups = {5: "0::/user.slice/user-1000.slice/session-1.scope\n"}
    c = CgroupResolver(read=cgroups.get, clock=lambda: proc.t)
    assert c.info(5, 100, "curl").workload.cgroup == "/user.slice/user-1000.slice/session-1.scope"
    cgroups[5] = "0::/system.slice/postgresql.service\n"
    assert c.info(5, 200, "postgres").workload.unit == "postgresql.service"
