"""Tests for tracer.kernel.btf: a synthetic blob (no root) and the running kernel's BTF."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import time
from typing import Dict, List, Optional, Tuple

import pytest

from tracer.kernel.btf import Btf, BtfError, Member

pytestmark = pytest.mark.unit

VMLINUX = "/sys/kernel/btf/vmlinux"

# Kind numbers (include/uapi/linux/btf.h), spelled out here on purpose rather
# than imported, so a wrong constant in the module cannot hide in the test.
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO, VAR, DATASEC = 9, 10, 11, 12, 13, 14, 15
FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = 16, 17, 18, 19


# --------------------------------------------------------------------------
# Synthetic blob
# --------------------------------------------------------------------------


class BlobBuilder:
    """Assembles a BTF blob: header + type section + string section."""

    def __init__(self, endian: str = "<") -> None:
        self.e = endian
        self.strings = bytearray(b"\0")  # offset 0 is the empty name
        self.str_offs: Dict[str, int] = {"": 0}
        self.types: List[bytes] = []

    def s(self, name: str) -> int:
        if name not in self.str_offs:
            self.str_offs[name] = len(self.strings)
            self.strings += name.encode() + b"\0"
        return self.str_offs[name]

    def add(self, kind: int, name: str, vlen: int, size_or_type: int,
            trailer: bytes = b"", kflag: bool = False) -> int:
        info = (int(kflag) << 31) | (kind << 24) | vlen
        self.types.append(struct.pack(self.e + "III", self.s(name), info, size_or_type) + trailer)
        return len(self.types)  # type ids start at 1

    def u32s(self, *vals: int) -> bytes:
        return struct.pack(self.e + "%dI" % len(vals), *vals)

    # One helper per kind -------------------------------------------------
    def int_(self, name: str, size: int, bits: Optional[int] = None, bit_off: int = 0) -> int:
        bits = size * 8 if bits is None else bits
        return self.add(INT, name, 0, size, self.u32s((bit_off << 16) | bits))

    def ptr(self, t: int) -> int:
        return self.add(PTR, "", 0, t)

    def array(self, elem: int, n: int, index: int) -> int:
        return self.add(ARRAY, "", 0, 0, self.u32s(elem, index, n))

    def composite(self, kind: int, name: str, size: int,
                  members: List[Tuple[str, int, int, int]], kflag: bool = False) -> int:
        """members: (name, type, bit offset, bitfield size)."""
        trailer = b""
        for m_name, m_type, bit_off, bits in members:
            off = (bits << 24) | bit_off if kflag else bit_off
            trailer += self.u32s(self.s(m_name), m_type, off)
        return self.add(kind, name, len(members), size, trailer, kflag)

    def enum(self, name: str, vals: List[Tuple[str, int]], signed: bool = False) -> int:
        trailer = b"".join(struct.pack(self.e + "Ii", self.s(n), v) if signed
                           else struct.pack(self.e + "II", self.s(n), v) for n, v in vals)
        return self.add(ENUM, name, len(vals), 4, trailer, signed)

    def enum64(self, name: str, vals: List[Tuple[str, int]], signed: bool = False) -> int:
        trailer = b""
        for n, v in vals:
            v &= (1 << 64) - 1
            trailer += self.u32s(self.s(n), v & 0xFFFFFFFF, v >> 32)
        return self.add(ENUM64, name, len(vals), 8, trailer, signed)

    def build(self, version: int = 1, magic: int = 0xEB9F) -> bytes:
        types = b"".join(self.types)
        hdr = struct.pack(self.e + "HBBIIIII", magic, version, 0, 24,
                          0, len(types), len(types), len(self.strings))
        return hdr + types + bytes(self.strings)


def build_sample(endian: str = "<", long_size: int = 8) -> bytes:
    b = BlobBuilder(endian)
    ulong = b.int_("long unsigned int", long_size)
    int_t = b.int_("int", 4)
    short = b.int_("short int", 2)
    char = b.int_("char", 1)
    uint = b.int_("unsigned int", 4)
    int5 = b.int_("int", 4, bits=5)  # old-style (no kind_flag) bitfield int

    # Kinds the lookups never use, placed before the structs: if the skip
    # length of any of them were wrong, every later type id would be off.
    proto = b.add(FUNC_PROTO, "", 2, int_t, b.u32s(b.s("a"), int_t, b.s("b"), ulong))
    b.add(FUNC, "do_thing", 1, proto)  # vlen = linkage, no trailer
    var = b.add(VAR, "some_var", 0, int_t, b.u32s(1))
    b.add(DATASEC, ".data", 2, 16, b.u32s(var, 0, 4, var, 8, 4))
    b.add(FLOAT, "double", 0, 8)
    b.add(DECL_TAG, "my_tag", 0, var, b.u32s(0xFFFFFFFF))
    b.add(TYPE_TAG, "user", 0, int_t)
    b.add(RESTRICT, "", 0, int_t)
    color = b.enum("color", [("RED", 0), ("GREEN", 1), ("NONE", -1)], signed=True)
    b.enum("mask", [("ALL", 0xFFFFFFFF)])
    b.enum64("big", [("SMALL", 1), ("HUGE", 1 << 40), ("TOP", (1 << 64) - 1)])
    b.enum64("sbig", [("MINUS_TWO", -2)], signed=True)
    b.enum("empty_enum", [])

    # Forward declaration and an empty definition ahead of the real one.
    b.add(FWD, "outer", 0, 0)
    b.composite(STRUCT, "outer", 0, [])

    inner = b.composite(STRUCT, "inner", 8, [("a", int_t, 0, 0), ("b", int_t, 32, 0)])
    inner_t = b.add(TYPEDEF, "inner_t", 0, inner)
    const_inner_t = b.add(CONST, "", 0, inner_t)
    lohi = b.composite(STRUCT, "", 4, [("lo", short, 0, 0), ("hi", short, 16, 0)])
    anon_u = b.composite(UNION, "", 4, [("u_int", int_t, 0, 0), ("", lohi, 0, 0)])
    char10 = b.array(char, 10, int_t)
    int3 = b.array(int_t, 3, int_t)
    int2x3 = b.array(int3, 2, int_t)
    vol_long = b.add(VOLATILE, "", 0, ulong)
    marker = b.array(int_t, 0, int_t)  # zero-length array

    # 'outer' points to itself: the pointer refers forward to the next id.
    out_ptr = b.ptr(len(b.types) + 2)
    outer = b.composite(STRUCT, "outer", 80, [
        ("first", int_t, 0, 0),
        ("", anon_u, 32, 0),
        ("nested", const_inner_t, 64, 0),
        ("name", char10, 128, 0),
        ("flags", uint, 208, 3),  # bitfield via kind_flag
        ("next", out_ptr, 256, 0),
        ("vol", vol_long, 320, 0),
        ("col", color, 384, 0),
        ("matrix", int2x3, 416, 0),
        ("marker", marker, 608, 0),
    ], kflag=True)
    b.composite(STRUCT, "legacy", 8, [
        ("bf", int5, 0, 0),  # bitfield via INT encoding, no kind_flag
        ("odd", char, 12, 0),  # offset not a multiple of 8
        ("c", char, 16, 0),
    ])
    assert outer == out_ptr + 1
    b.add(TYPEDEF, "outer_t", 0, outer)
    return b.build()


@pytest.fixture(scope="module")
def sample() -> Btf:
    return Btf.from_bytes(build_sample())


def test_synthetic_offsets(sample: Btf) -> None:
    assert sample.member("outer", "first") == Member(0, 4)
    # Members of an anonymous union, and of an anonymous struct in it.
    assert sample.member("outer", "u_int") == Member(4, 4)
    assert sample.member("outer", "lo") == Member(4, 2)
    assert sample.member("outer", "hi") == Member(6, 2)
    # Through const + typedef into a nested struct.
    assert sample.member("outer", "nested") == Member(8, 8)
    assert sample.member("outer", "nested.a") == Member(8, 4)
    assert sample.member("outer", "nested.b") == Member(12, 4)
    # Arrays: nelems * element size, nested arrays multiply.
    assert sample.member("outer", "name") == Member(16, 10)
    assert sample.member("outer", "matrix") == Member(52, 24)
    assert sample.member("outer", "marker") == Member(76, 0)
    assert sample.member("outer", "next") == Member(32, 8)
    assert sample.member("outer", "vol") == Member(40, 8)
    assert sample.member("outer", "col") == Member(48, 4)
    assert sample.member("legacy", "c") == Member(2, 1)
    # A typedef of a struct works as the outer name too.
    assert sample.member("outer_t", "hi") == Member(6, 2)


def test_synthetic_has_struct(sample: Btf) -> None:
    assert sample.has_struct("outer")
    assert sample.has_struct("inner")
    assert not sample.has_struct("nosuch")
    assert not sample.has_struct("color")  # an enum, not a struct


def test_synthetic_errors(sample: Btf) -> None:
    with pytest.raises(BtfError, match="struct nosuch is not in"):
        sample.member("nosuch", "x")
    with pytest.raises(BtfError, match="no member 'nope'"):
        sample.member("outer", "nope")
    with pytest.raises(BtfError, match="no member 'nested.c'"):
        sample.member("outer", "nested.c")
    with pytest.raises(BtfError, match="bitfield"):
        sample.member("outer", "flags")
    with pytest.raises(BtfError, match="bitfield"):
        sample.member("legacy", "bf")
    with pytest.raises(BtfError, match="bitfield"):
        sample.member("legacy", "odd")
    with pytest.raises(BtfError, match="pointer"):
        sample.member("outer", "next.first")
    with pytest.raises(BtfError, match="not a struct or union"):
        sample.member("outer", "first.x")
    with pytest.raises(BtfError, match="bad member path"):
        sample.member("outer", "nested..a")
    with pytest.raises(BtfError, match="bad member path"):
        sample.member("outer", "")


def test_synthetic_enums(sample: Btf) -> None:
    assert sample.enum_values("color") == {"RED": 0, "GREEN": 1, "NONE": -1}
    assert sample.enum_values("mask") == {"ALL": 0xFFFFFFFF}
    assert sample.enum_values("big") == {"SMALL": 1, "HUGE": 1 << 40, "TOP": (1 << 64) - 1}
    assert sample.enum_values("sbig") == {"MINUS_TWO": -2}
    assert sample.enum_values("empty_enum") == {}
    with pytest.raises(BtfError, match="enum nosuch is not in"):
        sample.enum_values("nosuch")


def test_synthetic_big_endian_and_pointer_size() -> None:
    be = Btf.from_bytes(build_sample(endian=">"))
    assert be.member("outer", "hi") == Member(6, 2)
    assert be.member("outer", "next") == Member(32, 8)
    assert be.enum_values("big")["HUGE"] == 1 << 40
    # 32-bit kernel: pointers are as wide as 'long'.
    small = Btf.from_bytes(build_sample(long_size=4))
    assert small.member("outer", "next") == Member(32, 4)


def test_corrupt_blobs() -> None:
    good = build_sample()
    with pytest.raises(BtfError, match="magic"):
        Btf.from_bytes(b"\x00\x00" + good[2:])
    with pytest.raises(BtfError, match="too short"):
        Btf.from_bytes(good[:4])
    with pytest.raises(BtfError, match="version"):
        Btf.from_bytes(good[:2] + b"\x02" + good[3:])
    with pytest.raises(BtfError, match="truncated"):
        Btf.from_bytes(good[:-5])
    # Unknown kind 31 in the first type record.
    bad = bytearray(good)
    struct.pack_into("<I", bad, 24 + 4, 31 << 24)
    with pytest.raises(BtfError, match="unknown kind 31"):
        Btf.from_bytes(bytes(bad))


def test_load_missing_file(tmp_path) -> None:
    with pytest.raises(BtfError, match="CONFIG_DEBUG_INFO_BTF"):
        Btf.load(str(tmp_path / "nope"))
    p = tmp_path / "blob"
    p.write_bytes(build_sample())
    assert Btf.load(str(p)).member("outer", "lo") == Member(4, 2)


# --------------------------------------------------------------------------
# Running kernel
# --------------------------------------------------------------------------

# (struct, path) pairs the tracer relies on.  sock.sk_flags is a #define for
# __sk_common.skc_flags in include/net/sock.h, so BTF only knows the latter.
KERNEL_FIELDS = [
    ("tcp_sock", "lsndtime"),
    ("tcp_sock", "rcv_tstamp"),
    ("tcp_sock", "srtt_us"),
    ("tcp_sock", "total_retrans"),
    ("tcp_sock", "inet_conn.icsk_ack.lrcvtime"),
    ("sock", "__sk_common.skc_state"),
    ("sock", "__sk_common.skc_net"),
    ("sock", "__sk_common.skc_flags"),
    ("sock", "__sk_common.skc_dport"),
    ("sock", "__sk_common.skc_daddr"),
    ("sock", "sk_err"),
    ("sock", "sk_protocol"),
    ("task_struct", "group_leader"),
    ("task_struct", "comm"),
    ("task_struct", "tgid"),
    ("inet_timewait_sock", "__tw_common.skc_state"),
]


def _readable(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            f.read(4)
        return True
    except OSError:
        return False


needs_kernel_btf = pytest.mark.skipif(
    not _readable(VMLINUX),
    reason=f"{VMLINUX} is not readable (kernel without CONFIG_DEBUG_INFO_BTF, or no sysfs)",
)


@pytest.fixture(scope="module")
def kbtf() -> Btf:
    if not _readable(VMLINUX):
        pytest.skip(f"{VMLINUX} is not readable")
    return Btf.load()


@needs_kernel_btf
def test_kernel_load_and_lookup_fast() -> None:
    start = time.process_time()
    btf = Btf.load()
    for s, p in KERNEL_FIELDS * 2:
        btf.member(s, p)
    btf.enum_values("tcp_ca_state")
    spent = time.process_time() - start
    assert spent < 1.0, f"load + {2 * len(KERNEL_FIELDS)} lookups took {spent:.3f}s CPU"


@needs_kernel_btf
def test_kernel_relationships(kbtf: Btf) -> None:
    m = {(s, p): kbtf.member(s, p) for s, p in KERNEL_FIELDS}
    sock_common = kbtf.member("sock", "__sk_common")
    tcp_sock = kbtf.member("tcp_sock", "inet_conn")  # first member: offset 0
    assert tcp_sock.offset == 0

    assert m["task_struct", "comm"].size == 16  # TASK_COMM_LEN
    assert m["task_struct", "comm"].offset > 0
    assert m["task_struct", "tgid"].size == 4
    assert m["task_struct", "group_leader"].size == 8

    assert sock_common.offset == 0  # struct sock starts with __sk_common
    for field in ("skc_state", "skc_net", "skc_flags", "skc_dport", "skc_daddr"):
        inner = m["sock", "__sk_common." + field]
        assert 0 <= inner.offset and inner.offset + inner.size <= sock_common.size
        # Same answer when asked of sock_common directly (anonymous unions).
        assert kbtf.member("sock_common", field).offset == inner.offset
    assert m["sock", "__sk_common.skc_state"].size == 1
    assert m["sock", "__sk_common.skc_dport"].size == 2
    assert m["sock", "__sk_common.skc_daddr"].size == 4
    assert m["sock", "sk_err"].offset >= sock_common.size
    assert m["sock", "sk_protocol"].size in (1, 2)
    assert (m["inet_timewait_sock", "__tw_common.skc_state"]
            == m["sock", "__sk_common.skc_state"])

    # Everything in tcp_sock lies beyond struct sock (inet_conn starts with it)
    # and inside tcp_sock itself.
    tcp_size = kbtf.member("tcp_sock", "inet_conn").size
    sock_size = kbtf.member("inet_connection_sock", "icsk_inet").size
    for p in ("lsndtime", "rcv_tstamp", "srtt_us", "total_retrans", "inet_conn.icsk_ack.lrcvtime"):
        f = m["tcp_sock", p]
        assert f.size == 4
        assert f.offset >= sock_size
    for p in ("lsndtime", "rcv_tstamp", "srtt_us", "total_retrans"):
        assert m["tcp_sock", p].offset >= tcp_size
    assert m["tcp_sock", "inet_conn.icsk_ack.lrcvtime"].offset < tcp_size

    with pytest.raises(BtfError, match="bitfield"):
        kbtf.member("sock_common", "skc_reuse")
    with pytest.raises(BtfError, match="#define alias"):
        kbtf.member("sock", "sk_flags")


@needs_kernel_btf
def test_kernel_enums(kbtf: Btf) -> None:
    states = kbtf.enum_values("tcp_ca_state")
    assert states["TCP_CA_Open"] == 0 and states["TCP_CA_Loss"] == 4
    if _has_enum(kbtf, "sk_rst_reason"):  # added in 6.10
        reasons = kbtf.enum_values("sk_rst_reason")
        assert reasons["SK_RST_REASON_NOT_SPECIFIED"] == 0


def _has_enum(btf: Btf, name: str) -> bool:
    try:
        btf.enum_values(name)
        return True
    except BtfError:
        return False


# -- independent cross-check with bpftool (libbpf's own parser) -------------

_HEAD = re.compile(r"^\[(\d+)\] (\w+) '(.*?)'(.*)$")
_LINE = re.compile(r"^\t'(.*?)'(.*)$")
_ATTR = re.compile(r"(\w+)=(\S+)")


def _bpftool_raw() -> Dict[int, str]:
    """Type id -> that type's lines of `bpftool btf dump ... format raw`."""
    out = subprocess.run(
        ["bpftool", "btf", "dump", "file", VMLINUX, "format", "raw"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout
    # Split only; each chunk is parsed when the walker first needs it, which
    # keeps this test fast (~130k types, a few hundred of them looked at).
    chunks: Dict[int, str] = {}
    for chunk in ("\n" + out).split("\n[")[1:]:
        chunks[int(chunk[:chunk.index("]")])] = "[" + chunk
    return chunks


def _parse_chunk(chunk: str) -> dict:
    lines = chunk.split("\n")
    h = _HEAD.match(lines[0])
    assert h, lines[0]
    items = []
    for line in lines[1:]:
        m = _LINE.match(line)
        if m:
            items.append((m.group(1), dict(_ATTR.findall(m.group(2)))))
    return {"kind": h.group(2), "name": h.group(3),
            "attrs": dict(_ATTR.findall(h.group(4))), "items": items}


class _RawWalker:
    """Member offsets from bpftool's text dump, to check Btf independently."""

    MODS = {"TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"}

    def __init__(self, chunks: Dict[int, str]) -> None:
        self.chunks = chunks
        self.parsed: Dict[int, dict] = {}
        # Name index of the kinds looked up by name, from the first line of
        # each chunk (a prefix test is much cheaper than a regex per type).
        self.heads: Dict[Tuple[str, str], List[int]] = {}
        for tid, c in chunks.items():
            kind = c[c.index("] ") + 2:c.index(" '")]
            if kind in ("STRUCT", "UNION", "ENUM", "ENUM64"):
                name = c[c.index(" '") + 2:c.index("'", c.index(" '") + 2)]
                self.heads.setdefault((kind, name), []).append(tid)

    def __getitem__(self, tid: int) -> dict:
        if tid not in self.parsed:
            self.parsed[tid] = _parse_chunk(self.chunks[tid])
        return self.parsed[tid]

    def named(self, kinds: Tuple[str, ...], name: str) -> List[int]:
        return sorted(t for k in kinds for t in self.heads.get((k, name), []))

    def strip(self, tid: int) -> int:
        while self[tid]["kind"] in self.MODS:
            tid = int(self[tid]["attrs"]["type_id"])
        return tid

    def size(self, tid: int) -> int:
        t = self[self.strip(tid)]
        if t["kind"] == "PTR":
            return 8
        if t["kind"] == "ARRAY":
            return int(t["attrs"]["nr_elems"]) * self.size(int(t["attrs"]["type_id"]))
        return int(t["attrs"]["size"])

    def find(self, tid: int, name: str) -> Optional[Tuple[int, int]]:
        items = self[tid]["items"]
        for n, a in items:
            if n == name:
                return int(a["bits_offset"]), int(a["type_id"])
        for n, a in items:
            if n == "(anon)":
                inner = self.strip(int(a["type_id"]))
                if self[inner]["kind"] in ("STRUCT", "UNION"):
                    hit = self.find(inner, name)
                    if hit:
                        return int(a["bits_offset"]) + hit[0], hit[1]
        return None

    def member(self, struct_name: str, path: str) -> Member:
        tid = [t for t in self.named(("STRUCT", "UNION"), struct_name) if self[t]["items"]][0]
        bits = 0
        for part in path.split("."):
            hit = self.find(self.strip(tid), part)
            assert hit is not None, f"bpftool dump has no {struct_name}.{path}"
            bits += hit[0]
            tid = hit[1]
        return Member(bits // 8, self.size(tid))

    def enum(self, name: str) -> Dict[str, int]:
        for tid in self.named(("ENUM", "ENUM64"), name):
            t = self[tid]
            if t["items"]:
                return {n: int(a["val"].rstrip("LU")) for n, a in t["items"]}
        raise KeyError(name)


@needs_kernel_btf
@pytest.mark.skipif(shutil.which("bpftool") is None,
                    reason="bpftool is not installed (Debian: apt-get install bpftool)")
def test_kernel_matches_bpftool(kbtf: Btf) -> None:
    ref = _RawWalker(_bpftool_raw())
    for s, p in KERNEL_FIELDS + [("sock", "__sk_common"), ("tcp_sock", "inet_conn")]:
        assert kbtf.member(s, p) == ref.member(s, p), f"{s}.{p}"
    for name in ("tcp_ca_state", "sk_rst_reason", "perf_callchain_context"):
        try:
            expected = ref.enum(name)
        except KeyError:
            continue  # not in this kernel
        got = kbtf.enum_values(name)
        # bpftool prints unsigned values; compare modulo the value width.
        assert {k: v % (1 << 64) for k, v in got.items()} == expected, name
