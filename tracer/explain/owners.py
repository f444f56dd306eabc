"""Who holds an accepted socket: the owner of records on sockets a pre-forked worker holds.

Pre-forked servers (nginx, gunicorn, php-fpm, Apache prefork, PostgreSQL) call listen() in one
process and accept() in others, or accept and then fork. The kernel side gives an accepted
socket its listener's owner, the only owner in view when the handshake completes in softirq,
and marks it owner_source "listener": the holder is not known yet. It becomes known when the
holder closes the socket, because close() runs in the holder's own context: for a socket that
already produced a record, the kernel side then sends an OWNER record (bpf/tte.bpf.c,
emit_owner) and nothing for any other socket, so the cost stays with the resets.

This module, used by the correlator:
- holds records with an inherited owner back until their OWNER record arrives (HOLD_NS);
- past HOLD_NS, looks the holder up in /proc: only in the listener owner's process tree and only
  for the inodes of the waiting records (a holder that has not closed still has the socket);
- if neither tells (the socket was closed between the two looks and its OWNER record is still
  in flight for GRACE_NS, or it was handed to a process outside the tree), releases the record
  unresolved, naming the candidates: the tool never guesses a pid;
- applies --pid (and --children) to these records: the kernel let them through because their
  listener is shared with a traced process, and only the holder decides. What it drops is
  counted by kind, so the totals the tool reports stay equal to the kernel's.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Iterable, Optional, Protocol

from tracer.model.frozen import evolve
from tracer.model.bounded import BoundedDict
from tracer.model.record import OWNER_FROM_PROCFS, OWNER_INHERITED, Record, RecordType

# How long a record waits for its holder's close before /proc is asked. nginx, gunicorn and
# PostgreSQL close a reset socket within a millisecond; a holder that keeps it longer is found
# in /proc instead. Only records with an inherited owner wait (and their other end's record).
HOLD_NS = 200_000_000
# After /proc did not find the socket, how long its OWNER record may still be on its way (the
# holder closed it between our last ring-buffer drain and the look).
GRACE_NS = 50_000_000
LEARNT_MAX = 4096              # holders remembered as members of a --children family
# At most one /proc walk per listener owner this often: a walk reads every fd of every process
# in the tree (0.4 ms for nginx with 2 workers, about 15 ms per 1,000 sockets held), and the
# records past due meanwhile are batched into the next one.
WALK_EVERY_NS = 100_000_000
OWNERS_MAX = 65536              # remembered holders (socket key -> holder), oldest dropped first
OWNER_TTL_NS = 10_000_000_000   # a holder learnt this long ago has no record left to resolve
EVENT_TYPES = (RecordType.RESET_SENT, RecordType.RESET_RECEIVED, RecordType.ABORT)


class HolderLookup(Protocol):
    """Where a socket's holder can be found while it still holds it (tracer/kernel/procfs.py)."""

    def tree(self, root: int) -> list[int]: ...

    def holders(self, pids: Iterable[int], inodes: set[int]) -> dict[int, tuple[int, str]]: ...

    def parent(self, pid: int) -> Optional[int]: ...


@dataclass
class PidScope:
    """--pid P [--children]: which processes are traced. `descendants` is refreshed by the live
    loop (the process tree, once a second); a holder accepted because its parent is in the family
    (it may have exited since) is remembered in `learnt`, so the event filter agrees."""

    pids: frozenset[int]
    children: bool = False
    descendants: set[int] = field(default_factory=set)
    learnt: "OrderedDict[int, None]" = field(default_factory=OrderedDict)
    learnings: int = 0       # pids learnt so far: tells a copy of the scope (replay's explaining process) it is behind

    def wants(self, pid: int, ppid: Optional[int] = None) -> bool:
        if pid in self.pids:
            return True
        if not self.children:
            return False
        if pid in self.descendants or pid in self.learnt:
            return True
        if ppid is not None and (ppid in self.pids or ppid in self.descendants or ppid in self.learnt):
            self.learnt[pid] = None
            self.learnings += 1
            while len(self.learnt) > LEARNT_MAX:
                self.learnt.popitem(last=False)
            return True
        return False


@dataclass(frozen=True)
class _Holder:
    pid: int
    comm: str
    thread: str
    ppid: Optional[int]
    source: str
    ts_ns: int


def drop_key(r: Record) -> tuple[str, str]:
    """How the kernel counted a record (tracer/kernel/capture.Counters), to uncount it."""
    if r.type is RecordType.RESET_SENT:
        return ("sent", r.reason if r.reason and 0 <= r.reason_raw < 63 else "unknown")
    if r.type is RecordType.RESET_RECEIVED:
        return ("received", "")
    return ("abort", str(r.errno_raw))


class OwnerResolver:
    def __init__(self, lookup: Optional[HolderLookup] = None, scope: Optional[PidScope] = None,
                 hold_ns: int = HOLD_NS, grace_ns: int = GRACE_NS, drop: bool = True) -> None:
        self.lookup = lookup
        self.scope = scope
        # drop=False (replay): the scope still learns a family's holders, but records out of it
        # stay in the stream, so their partners explain the kept events as in an unfiltered run;
        # the event filter then decides on the explanations.
        self.drop = drop
        self.hold_ns = hold_ns
        self.grace_ns = grace_ns
        self._holders: "OrderedDict[tuple[int, int, int], _Holder]" = OrderedDict()
        self.holders_evicted = 0                 # dropped for OWNERS_MAX (not for their TTL)
        # socket key -> when its holder was first missed in /proc; listener owner -> when its
        # tree was last walked. Both bounded: a long session sees millions of sockets.
        self._missed: BoundedDict[tuple[int, int, int], int] = BoundedDict(OWNERS_MAX)
        self._walked: BoundedDict[int, int] = BoundedDict(OWNERS_MAX)
        self.dropped: Counter[tuple[str, str]] = Counter()  # drop_key -> records the --pid scope dropped
        self.resolved: Counter[str] = Counter()             # how holders were learnt: "close", "procfs"
        self.unresolved = 0

    def evictions(self) -> dict[str, int]:
        return {"owners": self.holders_evicted + self._missed.evicted + self._walked.evicted}

    @staticmethod
    def needs(r: Record) -> bool:
        """A record whose owner is only its listener's: the holder is still to be learnt."""
        return r.type in EVENT_TYPES and r.owner_source == OWNER_INHERITED and r.pid != 0

    def note(self, u: Record) -> None:
        """An OWNER record: the process that closed the socket, i.e. its holder. For OWNER
        records cur_pid carries the holder's parent (bpf/tte.h), which --children needs when
        the holder has exited since."""
        self._remember(u.sock_key, _Holder(u.pid, u.comm, u.thread, u.cur_pid or None, u.owner_source, u.ts_ns))

    def _remember(self, key: tuple[int, int, int], h: _Holder) -> None:
        self._holders[key] = h
        self._holders.move_to_end(key)
        while len(self._holders) > OWNERS_MAX or (
                self._holders and h.ts_ns - next(iter(self._holders.values())).ts_ns > OWNER_TTL_NS):
            if len(self._holders) > OWNERS_MAX:
                self.holders_evicted += 1
            self._holders.popitem(last=False)
        self._missed.pop(key, None)

    def settle(self, records: list[Record], now_ns: Optional[int]) -> tuple[list[Record], set[int]]:
        """Give the records that need a holder the one known, look up those that waited long
        enough, drop those out of --pid scope. Returns the records kept, in order, and the
        positions (in that list) of those still waiting. now_ns None: the end, nothing waits."""
        todo: dict[int, list[int]] = {}       # listener owner -> positions to look up in /proc
        state: list[Optional[str]] = []       # per record: None (as is), "wait", "lookup", "unresolved"
        for i, r in enumerate(records):
            st = None
            if self.needs(r) and r.sock_key not in self._holders:
                missed = self._missed.get(r.sock_key)
                if now_ns is not None and now_ns - r.ts_ns < self.hold_ns:
                    st = "wait"
                elif missed is not None:
                    st = "wait" if now_ns is not None and now_ns - missed < self.grace_ns else "unresolved"
                elif self.lookup is not None and r.ino:
                    last = self._walked.get(r.pid)
                    if now_ns is not None and last is not None and now_ns - last < WALK_EVERY_NS:
                        st = "wait"
                    else:
                        st = "lookup"
                        todo.setdefault(r.pid, []).append(i)
                else:
                    st = "unresolved"
            state.append(st)
        trees: dict[int, list[int]] = {}
        for root, positions in todo.items():
            assert self.lookup is not None
            if now_ns is not None:
                self._walked[root] = now_ns
            trees[root] = self.lookup.tree(root)
            found = self.lookup.holders(trees[root], {records[i].ino for i in positions})
            for i in positions:
                r = records[i]
                hit = found.get(r.ino)
                if hit is not None:
                    self._remember(r.sock_key, _Holder(hit[0], hit[1], hit[1], self.lookup.parent(hit[0]),
                                                       OWNER_FROM_PROCFS, r.ts_ns))
                    state[i] = None
                elif now_ns is None:
                    state[i] = "unresolved"
                else:
                    self._missed.setdefault(r.sock_key, now_ns)
                    state[i] = "wait"
        kept: list[Record] = []
        waiting: set[int] = set()
        for r, st in zip(records, state):
            if st == "wait":
                waiting.add(len(kept))
                kept.append(r)
                continue
            if st == "unresolved":
                r = self._unresolved(r, trees.get(r.pid))
                wanted = self.scope is None or any(self.scope.wants(p) for p in r.owner_candidates)
            elif self.needs(r):
                h = self._holders[r.sock_key]
                self.resolved[h.source] += 1
                r = evolve(r, pid=h.pid, comm=h.comm, thread=h.thread, owner_source=h.source)
                wanted = self.scope is None or self.scope.wants(h.pid, h.ppid)
            else:
                wanted = True
            if wanted or not self.drop:
                kept.append(r)
            else:
                self.dropped[drop_key(r)] += 1
        return kept, waiting

    def _unresolved(self, r: Record, tree: Optional[list[int]]) -> Record:
        self.unresolved += 1
        self._missed.pop(r.sock_key, None)
        if tree is None and self.lookup is not None:
            tree = self.lookup.tree(r.pid)
        candidates = tuple(tree) if tree else (r.pid,)
        if candidates[0] != r.pid:
            candidates = (r.pid,) + tuple(p for p in candidates if p != r.pid)
        return evolve(r, pid=0, thread="", owner_candidates=candidates)
