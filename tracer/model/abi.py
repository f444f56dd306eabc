"""The constants and layouts the BPF program and the Python side share, read from bpf/tte.h.

bpf/tte.h is the one source: record types, owner sources, record flags, stat indices, and the
layouts of struct tte_record and struct tte_storm_key. This module parses the small subset of C
that header is written in (integer #defines, enums with explicit values, structs of fixed-size
integer and array members) and lays the structs out the way the C compiler does (natural
alignment), so nothing is copied by hand. tests/unit/test_abi.py compiles the header with the
system C compiler and checks every value and offset computed here against it; the BPF program
also static-asserts the record size and two offsets against what the decoder uses
(TTE_EXPECT_* in bpf/config.bpf.h).
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from typing import Mapping

from tracer.kernel import sources

HEADER = "tte.h"

# C type -> (struct format character, size). Arrays of __u8/char become "Ns" (bytes).
_TYPES: Mapping[str, tuple[str, int]] = {
    "__u8": ("B", 1), "__s8": ("b", 1), "char": ("c", 1),
    "__u16": ("H", 2), "__s16": ("h", 2),
    "__u32": ("I", 4), "__s32": ("i", 4),
    "__u64": ("Q", 8), "__s64": ("q", 8),
}

_COMMENTS = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+(\w+)[ \t]+(.+?)[ \t]*$", re.M)
_ENUM = re.compile(r"\benum\s+(\w+)\s*\{(.*?)\}\s*;", re.S)
_STRUCT = re.compile(r"\bstruct\s+(\w+)\s*\{(.*?)\}\s*;", re.S)
_MEMBER = re.compile(r"^(\w+)\s+(\w+)\s*(?:\[\s*(\w+)\s*\])?$")


class AbiError(ValueError):
    """bpf/tte.h uses C this parser does not read: extend the parser, not a copy of the value."""


@dataclass(frozen=True)
class Field:
    name: str
    ctype: str
    count: int  # 1 for a scalar
    offset: int
    size: int

    @property
    def is_pad(self) -> bool:
        return self.name.startswith("_")

    @property
    def format(self) -> str:
        char, _ = _TYPES[self.ctype]
        if self.is_pad:
            return f"{self.size}x"
        if self.count > 1 or char == "c":
            return f"{self.size}s"
        return char


@dataclass(frozen=True)
class Struct:
    name: str
    fields: tuple[Field, ...]
    size: int

    def offset(self, name: str) -> int:
        return self.field(name).offset

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"struct {self.name} has no member {name}")

    @property
    def names(self) -> tuple[str, ...]:
        """Member names without padding, in layout order (the order of unpack's values)."""
        return tuple(f.name for f in self.fields if not f.is_pad)

    @property
    def format(self) -> str:
        """A little-endian struct format with the compiler's padding made explicit."""
        out, at = ["<"], 0
        for f in self.fields:
            if f.offset > at:
                out.append(f"{f.offset - at}x")
            out.append(f.format)
            at = f.offset + f.size
        if self.size > at:
            out.append(f"{self.size - at}x")
        return "".join(out)


@dataclass(frozen=True)
class Abi:
    defines: Mapping[str, int]
    enums: Mapping[str, Mapping[str, int]]
    structs: Mapping[str, Struct]

    def prefixed(self, prefix: str) -> dict[str, int]:
        """Integer #defines starting with PREFIX, prefix removed, in header order."""
        return {k[len(prefix):]: v for k, v in self.defines.items() if k.startswith(prefix)}

    def enum(self, name: str, prefix: str) -> dict[str, int]:
        """Members of enum NAME, PREFIX removed, in header order."""
        return {k[len(prefix):]: v for k, v in self.enums[name].items() if k.startswith(prefix)}


@functools.lru_cache(maxsize=None)
def load() -> Abi:
    """The ABI of the installed (or checked-out) bpf/tte.h, parsed once."""
    with open(sources.header(HEADER), encoding="utf-8") as fh:
        return parse(fh.read())


def parse(text: str) -> Abi:
    text = _COMMENTS.sub(" ", text)
    defines: dict[str, int] = {}
    for name, value in _DEFINE.findall(text):
        try:
            defines[name] = _eval(value, defines)
        except AbiError:
            continue  # not an integer constant (an include guard, a macro with arguments)
    enums: dict[str, dict[str, int]] = {}
    for name, body in _ENUM.findall(text):
        members: dict[str, int] = {}
        for item in filter(None, (i.strip() for i in body.split(","))):
            if "=" not in item:
                raise AbiError(f"enum {name}: give {item} an explicit value")
            k, v = (s.strip() for s in item.split("=", 1))
            members[k] = _eval(v, {**defines, **members})
        enums[name] = members
    structs = {name: _layout(name, body, defines) for name, body in _STRUCT.findall(text)}
    return Abi(defines=defines, enums=enums, structs=structs)


def _layout(name: str, body: str, defines: Mapping[str, int]) -> Struct:
    fields: list[Field] = []
    at, align = 0, 1
    for decl in filter(None, (d.strip() for d in body.split(";"))):
        m = _MEMBER.match(" ".join(decl.split()))
        if not m or m.group(1) not in _TYPES:
            raise AbiError(f"struct {name}: cannot lay out '{decl}'")
        ctype, member, count_s = m.groups()
        count = 1 if count_s is None else _eval(count_s, defines)
        _, unit = _TYPES[ctype]
        at = (at + unit - 1) // unit * unit
        fields.append(Field(name=member, ctype=ctype, count=count, offset=at, size=unit * count))
        at += unit * count
        align = max(align, unit)
    size = (at + align - 1) // align * align
    return Struct(name=name, fields=tuple(fields), size=size)


def _eval(expr: str, names: Mapping[str, int]) -> int:
    """An integer constant expression of literals (with u/U/l/L suffixes), names, + - * << | ( )."""
    cleaned = re.sub(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]+\b", r"\1", expr.strip())
    try:
        tree = ast.parse(cleaned, mode="eval")
    except SyntaxError as exc:
        raise AbiError(f"not an integer constant: {expr}") from exc
    return _value(tree.body, names, expr)


def _value(node: ast.AST, names: Mapping[str, int], expr: str) -> int:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_value(node.operand, names, expr)
    if isinstance(node, ast.BinOp):
        a, b = _value(node.left, names, expr), _value(node.right, names, expr)
        if isinstance(node.op, ast.LShift):
            return a << b
        if isinstance(node.op, ast.BitOr):
            return a | b
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        if isinstance(node.op, ast.Mult):
            return a * b
    raise AbiError(f"not an integer constant: {expr}")
