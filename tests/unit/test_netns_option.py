"""--netns NAME|PATH|INODE resolution (tracer/kernel/netns.py), without root: the test's own
namespace files stand in for named ones."""

from __future__ import annotations

import os

import pytest

from tracer.kernel import netns
from tracer.model.errors import InvalidOption

pytestmark = pytest.mark.unit
OWN = "/proc/self/ns/net"


def own_inode() -> int:
    return os.stat(OWN).st_ino


def test_a_path_resolves_to_the_namespace_inode():
    assert netns.resolve(OWN) == own_inode()
    assert netns.resolve(f"/proc/{os.getpid()}/ns/net") == own_inode()


def test_an_inode_of_a_live_namespace_is_accepted():
    assert netns.resolve(str(own_inode())) == own_inode()


def test_an_inode_nothing_uses_is_refused_with_the_command_that_lists_them():
    with pytest.raises(InvalidOption) as exc:
        netns.resolve("12345")
    assert exc.value.exit_code == 2 and "lsns -t net" in exc.value.remedy


@pytest.mark.parametrize("spec, text", [
    ("/proc/self/ns/mnt", "not a network namespace"),
    ("/etc/hostname", "not a namespace file"),
    ("/no/such/file", "No such file"),
    ("no-such-name", "ip netns list"),
    ("bad name!", "not a namespace name, path or inode"),
    ("", "needs a value"),
])
def test_bad_values_say_what_is_wrong_and_how_to_find_a_good_one(spec, text):
    with pytest.raises(InvalidOption) as exc:
        netns.resolve(spec)
    assert text in exc.value.message + " " + exc.value.remedy


def test_names_come_from_the_netns_directory(tmp_path):
    # A name is any file in the directory whose inode is a namespace's: here a hard link would
    # need nsfs, so point the directory at files and compare inodes only.
    (tmp_path / "blue").write_text("")
    assert netns.names(str(tmp_path)) == {os.stat(tmp_path / "blue").st_ino: "blue"}
    assert netns.names(str(tmp_path / "missing")) == {}


def test_a_recordings_name_table_resolves_names_of_namespaces_gone_since():
    known = {"lab-client": 4026532999}
    assert netns.resolve("lab-client", known=known) == 4026532999
    # inodes of the recording host are not checked against this host
    assert netns.resolve("4026532000", known=known) == 4026532000
    with pytest.raises(InvalidOption) as exc:
        netns.resolve("other", netns_dir="/nonexistent", known=known)
    assert "the recording names no network namespace 'other'" in exc.value.message


def test_comma_lists_and_repeats_resolve_to_one_set():
    assert netns.resolve_all([OWN, str(own_inode())]) == frozenset({own_inode()})


def test_name_cache_learns_names_of_namespaces_younger_than_the_tracer(tmp_path):
    now = [100.0]
    cache = netns.NameCache(str(tmp_path), refresh_s=1.0, clock=lambda: now[0])
    (tmp_path / "late").write_text("")
    ino = os.stat(tmp_path / "late").st_ino
    assert cache.learn(ino, 10) == "late"            # an unknown inode lists the directory again
    (tmp_path / "late").unlink()
    assert cache.at(ino, 10) == "late"               # an event from before keeps its name
    assert cache.learn(ino, 20) is None              # a record after: the name is gone
    assert cache.at(ino, 10) == "late" and cache.at(ino, 25) is None
    assert cache.history.last() == {ino: "late"}
    assert cache.learn(0, 30) is None and cache.at(0, 30) is None


def test_an_inode_that_goes_to_the_next_namespace_names_each_event_by_its_own(tmp_path):
    # The kernel gives a deleted namespace's inode to the next one made: the same inode is
    # "lab1-client" for the first records and "lab2-client" later (a rename keeps the inode,
    # which is what the cache sees then).
    cache = netns.NameCache(str(tmp_path), refresh_s=1.0, clock=lambda: 100.0)
    (tmp_path / "lab1-client").write_text("")
    ino = os.stat(tmp_path / "lab1-client").st_ino
    assert cache.learn(ino, 1_000) == "lab1-client"
    os.rename(tmp_path / "lab1-client", tmp_path / "lab2-client")
    assert cache.learn(ino, 2_000) == "lab2-client"   # checked on every record, not kept stale
    assert (cache.at(ino, 1_500), cache.at(ino, 2_000), cache.at(ino, 9_000)) == \
        ("lab1-client", "lab2-client", "lab2-client")
    assert cache.at(ino, 500) == "lab1-client"        # before the first record: its first name
    assert cache.history.inodes_by_name() == {"lab1-client": ino, "lab2-client": ino}


def test_name_cache_lists_at_most_once_a_second_for_an_unnamed_namespace(tmp_path, monkeypatch):
    now = [100.0]
    listings = []
    real = netns.names
    monkeypatch.setattr(netns, "names", lambda d=netns.NETNS_DIR: listings.append(d) or real(d))
    cache = netns.NameCache(str(tmp_path), refresh_s=1.0, clock=lambda: now[0])
    assert len(listings) == 1                   # at start
    for i in range(100):
        assert cache.learn(777, i) is None
    assert len(listings) == 2                   # one more for the unknown inode, not 100
    now[0] += 1.0
    assert cache.learn(777, 200) is None and len(listings) == 3
    assert cache.history.entries == {}
