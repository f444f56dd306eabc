"""Minimal reader of the kernel's BTF blob, for struct member offsets.

Why this exists: the BPF programs read kernel fields with
``bpf_probe_read_kernel(&dst, size, (void *)sk + offset)``.  Offsets taken
from kernel headers at build time are wrong whenever the headers do not match
the running kernel (distribution patches, config options that add or remove
members, a newer kernel than the headers).  ``/sys/kernel/btf/vmlinux``
describes the types of the kernel that is actually running, so offsets read
from it are right by construction.

The format is documented in the kernel's Documentation/bpf/btf.rst:

* a header (``struct btf_header``: magic 0xeB9F, version, flags, hdr_len,
  then type_off/type_len and str_off/str_len relative to the header's end);
* the type section: ``struct btf_type`` records (name_off, info, size/type,
  12 bytes each) in type-id order starting at id 1, each followed by
  kind-specific trailing data whose length depends on the kind and on vlen;
* the string section: NUL-terminated names, addressed by byte offset.

Only stdlib is used (no bcc import) so that this works in unit tests and on
hosts where bcc is broken.  It reads base BTF only (vmlinux): split BTF of
kernel modules numbers its types after vmlinux's and is not supported.

The vmlinux blob holds ~130k types, most of them FUNC/FUNC_PROTO we never
need, so loading makes a single pass that records where each record starts
(an ``array('I')``) and remembers the name offsets of the few kinds that can
be looked up by name.  Names are decoded and members unpacked only on lookup.
"""

from __future__ import annotations

import struct as _struct
from array import array
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

__all__ = ["BtfError", "Member", "Btf"]

DEFAULT_PATH = "/sys/kernel/btf/vmlinux"

BTF_MAGIC = 0xEB9F

# Kind numbers from include/uapi/linux/btf.h.
KIND_INT = 1
KIND_PTR = 2
KIND_ARRAY = 3
KIND_STRUCT = 4
KIND_UNION = 5
KIND_ENUM = 6
KIND_FWD = 7
KIND_TYPEDEF = 8
KIND_VOLATILE = 9
KIND_CONST = 10
KIND_RESTRICT = 11
KIND_FUNC = 12
KIND_FUNC_PROTO = 13
KIND_VAR = 14
KIND_DATASEC = 15
KIND_FLOAT = 16
KIND_DECL_TAG = 17
KIND_TYPE_TAG = 18
KIND_ENUM64 = 19

# Bytes of trailing data after the 12-byte btf_type: (fixed, per vlen entry).
# Getting these right is what lets the loader skip kinds it never looks at.
_TRAILER: Dict[int, Tuple[int, int]] = {
    KIND_INT: (4, 0),  # u32 encoding/offset/bits
    KIND_PTR: (0, 0),
    KIND_ARRAY: (12, 0),  # struct btf_array {type, index_type, nelems}
    KIND_STRUCT: (0, 12),  # struct btf_member {name_off, type, offset}
    KIND_UNION: (0, 12),
    KIND_ENUM: (0, 8),  # struct btf_enum {name_off, s32 val}
    KIND_FWD: (0, 0),
    KIND_TYPEDEF: (0, 0),
    KIND_VOLATILE: (0, 0),
    KIND_CONST: (0, 0),
    KIND_RESTRICT: (0, 0),
    KIND_FUNC: (0, 0),  # vlen holds linkage, not a count
    KIND_FUNC_PROTO: (0, 8),  # struct btf_param {name_off, type}
    KIND_VAR: (4, 0),  # struct btf_var {linkage}
    KIND_DATASEC: (0, 12),  # struct btf_var_secinfo {type, offset, size}
    KIND_FLOAT: (0, 0),
    KIND_DECL_TAG: (4, 0),  # struct btf_decl_tag {component_idx}
    KIND_TYPE_TAG: (0, 0),
    KIND_ENUM64: (0, 12),  # struct btf_enum64 {name_off, val_lo32, val_hi32}
}
# Same table as a tuple indexed by kind, for the hot loading loop.
_FIXED = tuple(_TRAILER.get(k, (-1, 0))[0] for k in range(32))
_PER_VLEN = tuple(_TRAILER.get(k, (-1, 0))[1] for k in range(32))

# Kinds that only qualify or rename another type; followed when descending.
_MODIFIERS = frozenset(
    {KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG}
)
_COMPOSITE = frozenset({KIND_STRUCT, KIND_UNION})
_ENUMS = frozenset({KIND_ENUM, KIND_ENUM64})
# Kinds worth indexing by name. FWD is left out on purpose: a forward
# declaration never has members, so it can never answer a lookup.
# INT is indexed for the pointer-size guess (vmlinux has only ~15 INTs).
_NAMED = frozenset(
    {KIND_INT, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_ENUM64, KIND_TYPEDEF}
)

_KIND_NAMES = {
    KIND_INT: "int", KIND_PTR: "pointer", KIND_ARRAY: "array",
    KIND_STRUCT: "struct", KIND_UNION: "union", KIND_ENUM: "enum",
    KIND_FWD: "forward declaration", KIND_TYPEDEF: "typedef",
    KIND_VOLATILE: "volatile", KIND_CONST: "const", KIND_RESTRICT: "restrict",
    KIND_FUNC: "function", KIND_FUNC_PROTO: "function prototype",
    KIND_VAR: "variable", KIND_DATASEC: "data section", KIND_FLOAT: "float",
    KIND_DECL_TAG: "decl tag", KIND_TYPE_TAG: "type tag", KIND_ENUM64: "enum64",
}

_HEADER_LEN = 24  # sizeof(struct btf_header), version 1
_MAX_CHAIN = 64  # guards against typedef/modifier cycles in a corrupt blob

_DUMP_HINT = "inspect the layout with `bpftool btf dump file /sys/kernel/btf/vmlinux format c`"


class BtfError(Exception):
    """BTF is unavailable or corrupt, or a requested type/member is missing."""


@dataclass(frozen=True)
class Member:
    """A member's place in memory, in bytes from the start of the outer struct."""

    offset: int
    size: int


class Btf:
    """Parsed BTF blob: answers member offsets/sizes and enum values by name."""

    def __init__(self, data: bytes) -> None:
        # Use Btf.load() or Btf.from_bytes(); this does the parsing.
        # struct.unpack_from reads bytes in place, so nothing is copied per
        # record; bytes() only copies if given a bytearray/memoryview.
        self._raw = bytes(data)
        self._parse()

    @classmethod
    def load(cls, path: str = DEFAULT_PATH) -> "Btf":
        """Read and parse a BTF file (the running kernel's by default)."""
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise BtfError(
                f"BTF file {path} does not exist: the kernel must be built with "
                "CONFIG_DEBUG_INFO_BTF=y (and sysfs mounted) for offsets to be "
                "taken from the running kernel"
            ) from None
        except PermissionError:
            raise BtfError(
                f"cannot read BTF file {path}: permission denied; run as root"
            ) from None
        except OSError as e:
            raise BtfError(f"cannot read BTF file {path}: {e}") from None
        try:
            return cls.from_bytes(data)
        except BtfError as e:
            raise BtfError(f"{path}: {e}") from None

    @classmethod
    def from_bytes(cls, data: bytes) -> "Btf":
        """Parse a BTF blob held in memory."""
        return cls(data)

    # ------------------------------------------------------------------ parse

    def _parse(self) -> None:
        buf = self._raw
        if len(buf) < 8:
            raise BtfError(f"BTF blob is {len(buf)} bytes, too short for a header; the file is corrupt")
        # The magic tells the byte order: the blob is written in the
        # endianness of the machine it describes.
        if _struct.unpack_from("<H", buf, 0)[0] == BTF_MAGIC:
            endian = "<"
        elif _struct.unpack_from(">H", buf, 0)[0] == BTF_MAGIC:
            endian = ">"
        else:
            raise BtfError(
                f"bad BTF magic 0x{bytes(buf[:2]).hex()} (expected 0xeb9f); the file is not BTF"
            )
        version, _flags, hdr_len = _struct.unpack_from(endian + "BBI", buf, 2)
        if version != 1:
            raise BtfError(f"unsupported BTF version {version}; this reader knows version 1")
        if hdr_len < _HEADER_LEN or hdr_len > len(buf):
            raise BtfError(f"bad BTF header length {hdr_len}; the file is corrupt")
        type_off, type_len, str_off, str_len = _struct.unpack_from(endian + "IIII", buf, 8)
        total = len(buf) - hdr_len
        if type_off + type_len > total or str_off + str_len > total:
            raise BtfError(
                f"BTF sections (types {type_off}+{type_len}, strings {str_off}+{str_len}) "
                f"run past the end of the {len(buf)}-byte blob; the file is truncated"
            )
        self._types_at = hdr_len + type_off  # absolute offset of type id 1
        self._strs_at = hdr_len + str_off
        self._strs_end = self._strs_at + str_len
        self._t3 = _struct.Struct(endian + "III")  # btf_type, btf_member, btf_array...
        self._u32 = _struct.Struct(endian + "I")
        self._i32 = _struct.Struct(endian + "i")
        self._endian = endian

        # One pass over all records.  _offs[id] = absolute offset of the
        # record; _by_name_off maps name_off -> ids for lookup-able kinds.
        offs = array("I", [0])  # id 0 is void and has no record
        by_name_off: Dict[int, List[int]] = {}
        unpack = self._t3.unpack_from
        fixed, per_vlen, named = _FIXED, _PER_VLEN, _NAMED
        pos = self._types_at
        end = pos + type_len
        append = offs.append
        tid = 0
        while pos < end:
            if pos + 12 > end:
                raise BtfError(f"BTF type section ends inside type {tid + 1}; the file is corrupt")
            name_off, info, _ = unpack(buf, pos)
            kind = (info >> 24) & 0x1F
            extra = fixed[kind]
            if extra < 0:
                raise BtfError(
                    f"BTF type {tid + 1} has unknown kind {kind}; this reader is older than "
                    "the kernel's BTF format and must be taught the new kind"
                )
            tid += 1
            append(pos)
            if kind in named and name_off:
                ids = by_name_off.get(name_off)
                if ids is None:
                    by_name_off[name_off] = [tid]
                else:
                    ids.append(tid)
            pos += 12 + extra + per_vlen[kind] * (info & 0xFFFF)
        if pos != end:
            raise BtfError(f"last BTF type runs {pos - end} bytes past the type section; the file is corrupt")
        self._offs = offs
        self._by_name_off = by_name_off
        self._by_name: Optional[Dict[str, List[int]]] = None
        self._ptr_size: Optional[int] = None

    # -------------------------------------------------------------- low level

    def _str(self, off: int) -> str:
        start = self._strs_at + off
        if start >= self._strs_end:
            raise BtfError(f"BTF string offset {off} is outside the string section; the file is corrupt")
        end = self._raw.find(b"\0", start, self._strs_end)
        if end < 0:
            end = self._strs_end
        return self._raw[start:end].decode("utf-8", "replace")

    def _type(self, tid: int) -> Tuple[int, int, int, int]:
        """(kind, name_off, info, size_or_type) of a type id."""
        if tid <= 0 or tid >= len(self._offs):
            raise BtfError(f"BTF type id {tid} does not exist; the file is corrupt")
        name_off, info, st = self._t3.unpack_from(self._raw, self._offs[tid])
        return (info >> 24) & 0x1F, name_off, info, st

    def _names(self) -> Dict[str, List[int]]:
        # Decoding ~20k names costs a few ms, so do it once, on first lookup.
        if self._by_name is None:
            by_name: Dict[str, List[int]] = {}
            for name_off, ids in self._by_name_off.items():
                by_name.setdefault(self._str(name_off), []).extend(ids)
            for ids in by_name.values():
                ids.sort()
            self._by_name = by_name
        return self._by_name

    def _strip(self, tid: int) -> int:
        """Follow typedef/const/volatile/restrict/type_tag to the real type."""
        for _ in range(_MAX_CHAIN):
            if tid == 0:
                return 0
            kind, _, _, st = self._type(tid)
            if kind not in _MODIFIERS:
                return tid
            tid = st
        raise BtfError(f"BTF type chain through id {tid} does not end; the file is corrupt")

    def _pointer_size(self) -> int:
        # BTF does not record the pointer size.  Like libbpf, infer it from
        # the size of 'long' (the kernel's pointer-sized integer); default 8.
        if self._ptr_size is None:
            self._ptr_size = 8
            for name in ("long unsigned int", "long int", "unsigned long", "long"):
                for tid in self._int_ids(name):
                    self._ptr_size = self._type(tid)[3]
                    return self._ptr_size
        return self._ptr_size

    def _int_ids(self, name: str) -> List[int]:
        return [t for t in self._names().get(name, []) if self._type(t)[0] == KIND_INT]

    def _sizeof(self, tid: int, what: str) -> int:
        tid = self._strip(tid)
        if tid == 0:
            raise BtfError(f"{what} has type void, which has no size")
        kind, _, _, st = self._type(tid)
        if kind == KIND_PTR:
            return self._pointer_size()
        if kind == KIND_ARRAY:
            elem, _index, nelems = self._t3.unpack_from(self._raw, self._offs[tid] + 12)
            return nelems * self._sizeof(elem, what + "[]") if nelems else 0
        if kind in (KIND_INT, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_ENUM64,
                    KIND_FLOAT, KIND_DATASEC):
            return st
        raise BtfError(
            f"{what} has type kind '{_KIND_NAMES.get(kind, kind)}', which has no size"
        )

    def _is_int_bitfield(self, tid: int) -> bool:
        # Without kind_flag, a bitfield is encoded in the INT type itself:
        # BTF_INT_OFFSET (bits 16-23) or BTF_INT_BITS (bits 0-7) narrower
        # than the int's byte size.
        if tid == 0:
            return False
        kind, _, _, size = self._type(tid)
        if kind != KIND_INT:
            return False
        enc: int = self._u32.unpack_from(self._raw, self._offs[tid] + 12)[0]
        return (enc >> 16) & 0xFF != 0 or (enc & 0xFF) != size * 8

    # ------------------------------------------------------------- members

    def _find_member(self, tid: int, name: bytes) -> Optional[Tuple[int, int, int]]:
        """Search struct/union `tid` (already stripped) for member `name`.

        Returns (bit offset from the start of `tid`, member type id, bitfield
        size in bits or 0).  Anonymous struct/union members are searched
        depth-first: C makes their member names visible in the outer struct.
        """
        buf, unpack = self._raw, self._t3.unpack_from
        raw = self._raw
        _, _, info, _ = self._type(tid)
        kind_flag = info >> 31
        vlen = info & 0xFFFF
        base = self._offs[tid] + 12
        strs = self._strs_at
        n = len(name)
        anonymous: List[Tuple[int, int]] = []
        for i in range(vlen):
            m_name, m_type, m_off = unpack(buf, base + 12 * i)
            # With kind_flag, offset packs bitfield_size<<24 | bit_offset.
            if kind_flag:
                bits, bit_off = m_off >> 24, m_off & 0xFFFFFF
            else:
                bits, bit_off = 0, m_off
            if m_name == 0:
                anonymous.append((bit_off, m_type))
                continue
            s = strs + m_name
            # Compare raw bytes: avoids decoding every member name.
            if raw[s:s + n] == name and raw[s + n:s + n + 1] == b"\0":
                return bit_off, m_type, bits
        for bit_off, m_type in anonymous:
            inner = self._strip(m_type)
            if inner and self._type(inner)[0] in _COMPOSITE:
                hit = self._find_member(inner, name)
                if hit is not None:
                    return bit_off + hit[0], hit[1], hit[2]
        return None

    def _lookup_composite(self, name: str) -> Optional[int]:
        """Id of the struct/union called `name`, preferring full definitions."""
        ids = self._names().get(name, [])
        best: Optional[int] = None
        for tid in ids:
            kind, _, info, _ = self._type(tid)
            if kind in _COMPOSITE:
                if info & 0xFFFF:
                    return tid  # has members: the real definition
                if best is None:
                    best = tid  # empty struct; keep unless a fuller one shows up
        if best is not None:
            return best
        # Accept a typedef of a struct too (e.g. 'atomic_t', 'spinlock_t').
        for tid in ids:
            if self._type(tid)[0] == KIND_TYPEDEF:
                target = self._strip(tid)
                if target and self._type(target)[0] in _COMPOSITE:
                    return target
        return None

    def has_struct(self, name: str) -> bool:
        """True if a struct or union `name` is defined (not just declared)."""
        return self._lookup_composite(name) is not None

    def member(self, struct: str, path: str) -> Member:
        """Byte offset and size of `path` (dot-separated) inside `struct`.

        Example: ``member("tcp_sock", "inet_conn.icsk_ack.lrcvtime")``.
        Members of anonymous structs/unions are found without naming them;
        typedefs and qualifiers are followed when descending.
        """
        tid = self._lookup_composite(struct)
        if tid is None:
            raise BtfError(
                f"struct {struct} is not in this kernel's BTF; the kernel does not "
                f"have that type (renamed or configured out) - {_DUMP_HINT}"
            )
        parts = path.split(".")
        if not path or any(not p for p in parts):
            raise BtfError(f"bad member path {path!r}: use dot-separated member names, e.g. 'a.b.c'")
        bit_off = 0
        where = struct
        m_type = tid
        for depth, part in enumerate(parts):
            inner = self._strip(m_type)
            kind = self._type(inner)[0] if inner else 0
            if kind not in _COMPOSITE:
                what = _KIND_NAMES.get(kind, "void")
                hint = (
                    "; read the pointer first and look the rest of the path up in "
                    "the pointed-to struct" if kind == KIND_PTR else ""
                )
                raise BtfError(
                    f"{where} is of kind '{what}', not a struct or union, so it has "
                    f"no member '{part}'{hint}"
                )
            hit = self._find_member(inner, part.encode())
            if hit is None:
                raise BtfError(
                    f"struct {struct} has no member '{'.'.join(parts[:depth + 1])}' "
                    f"(anonymous structs/unions were searched too); it was renamed or "
                    f"moved in this kernel, or it is a #define alias (e.g. sock.sk_flags "
                    f"means __sk_common.skc_flags) - {_DUMP_HINT}"
                )
            off, m_type, bits = hit
            where = f"{where}.{part}"
            if bits or off % 8 or self._is_int_bitfield(self._strip(m_type)):
                raise BtfError(
                    f"{where} is a bitfield (bit offset {bit_off + off}"
                    f"{f', {bits} bits' if bits else ''}); it has no byte offset, so "
                    "read the containing word and mask it, or use BPF CO-RE "
                    "(BPF_CORE_READ_BITFIELD)"
                )
            bit_off += off
        return Member(offset=bit_off // 8, size=self._sizeof(m_type, where))

    # --------------------------------------------------------------- enums

    def enum_values(self, name: str) -> Dict[str, int]:
        """Enumerators of enum `name` (ENUM or ENUM64) as {name: value}."""
        ids = self._names().get(name, [])
        candidates = [t for t in ids if self._type(t)[0] in _ENUMS]
        if not candidates:
            for tid in ids:  # typedef'd enum, e.g. 'typedef enum {...} foo_t'
                target = self._strip(tid)
                if target and self._type(target)[0] in _ENUMS:
                    candidates.append(target)
        if not candidates:
            raise BtfError(
                f"enum {name} is not in this kernel's BTF; the kernel does not define "
                f"it (too old, or configured out) - {_DUMP_HINT}"
            )
        # Prefer a definition with enumerators over an empty (declared) one.
        tid = max(candidates, key=lambda t: self._type(t)[2] & 0xFFFF)
        kind, _, info, _ = self._type(tid)
        # kind_flag marks a signed enum (bpftool prints %d then, %u otherwise).
        signed = bool(info >> 31)
        vlen = info & 0xFFFF
        base = self._offs[tid] + 12
        out: Dict[str, int] = {}
        if kind == KIND_ENUM:
            fmt = _struct.Struct(self._endian + ("Ii" if signed else "II"))
            for i in range(vlen):
                e_name, val = fmt.unpack_from(self._raw, base + 8 * i)
                out[self._str(e_name)] = val
        else:
            for i in range(vlen):
                e_name, lo, hi = self._t3.unpack_from(self._raw, base + 12 * i)
                val = (hi << 32) | lo
                if signed and val >= 1 << 63:
                    val -= 1 << 64
                out[self._str(e_name)] = val
        return out
