"""The Python side reads the C side's constants and layouts from bpf/tte.h; prove they agree.

The C compiler is the judge: a generated C file includes bpf/tte.h and static-asserts every
#define, enum member, struct size and member offset tracer/model/abi.py computed, and must
compile. The same checks against a deliberately wrong value must fail, so the test can fail.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tracer.kernel import sources
from tracer.model import abi, record
from tracer.model.record import RecordType

pytestmark = pytest.mark.unit

BPF = sources.bpf_dir()
GCC = shutil.which("gcc")
needs_gcc = pytest.mark.skipif(GCC is None, reason="gcc is installed by scripts/setup.sh (test components)")

# tte.h uses the kernel's __u8..__u64; declare them here so no system header is needed.
_PRELUDE = """
typedef unsigned char __u8; typedef signed char __s8;
typedef unsigned short __u16; typedef signed short __s16;
typedef unsigned int __u32; typedef signed int __s32;
typedef unsigned long long __u64; typedef signed long long __s64;
#include "tte.h"
"""


def _asserts(a: abi.Abi) -> list[str]:
    out = [f"_Static_assert({k} == {v}, \"{k}\");" for k, v in a.defines.items()]
    for members in a.enums.values():
        out += [f"_Static_assert({k} == {v}, \"{k}\");" for k, v in members.items()]
    for s in a.structs.values():
        out.append(f"_Static_assert(sizeof(struct {s.name}) == {s.size}, \"sizeof {s.name}\");")
        for f in s.fields:
            out.append(f"_Static_assert(__builtin_offsetof(struct {s.name}, {f.name}) == {f.offset}, "
                       f"\"{s.name}.{f.name}\");")
            out.append(f"_Static_assert(sizeof(((struct {s.name} *)0)->{f.name}) == {f.size}, "
                       f"\"size {s.name}.{f.name}\");")
    return out


def _compile(tmp_path, lines: list[str]) -> subprocess.CompletedProcess:
    src = tmp_path / "abi_check.c"
    src.write_text(_PRELUDE + "\n".join(lines) + "\n")
    return subprocess.run([GCC, "-fsyntax-only", "-ffreestanding", "-nostdinc", f"-I{BPF}", str(src)],
                          capture_output=True, text=True, timeout=60)


@needs_gcc
def test_every_constant_and_offset_agrees_with_the_c_compiler(tmp_path):
    a = abi.load()
    checks = _asserts(a)
    # what the header must give the Python side at least
    assert len(a.structs["tte_record"].fields) >= 39 and "tte_storm_key" in a.structs
    assert a.prefixed("TTE_STAT_")["MAX"] > a.prefixed("TTE_STAT_")["STATE_BASE"]
    proc = _compile(tmp_path, checks)
    assert proc.returncode == 0, proc.stderr[-3000:]


@needs_gcc
def test_a_wrong_offset_fails_the_check(tmp_path):
    f = abi.load().structs["tte_record"].field("owner_src")
    bad = f"_Static_assert(__builtin_offsetof(struct tte_record, owner_src) == {f.offset + 1}, \"owner_src\");"
    proc = _compile(tmp_path, [bad])
    assert proc.returncode != 0 and "owner_src" in proc.stderr


def test_decoder_unpacks_in_header_order():
    assert record.FIELD_ORDER == abi.load().structs["tte_record"].names
    assert record.RECORD_SIZE == abi.load().structs["tte_record"].size


def test_every_record_type_and_flag_has_a_python_name():
    a = abi.load()
    assert set(record.TYPE_BY_RAW.values()) == set(RecordType)
    assert len(record.TYPE_BY_RAW) == len(a.enums["tte_record_type"])
    assert record.FLAG_BITS["peer_fin"] == a.defines["TTE_F_PEER_FIN"]
    assert record.OWNER_SOURCES[a.enums["tte_owner_source"]["TTE_OWNER_LISTENER"]] == "listener"


def test_parser_lays_out_padding_like_c():
    s = abi.parse("struct t { __u8 a; __u32 b; __u16 c; };").structs["t"]
    assert [f.offset for f in s.fields] == [0, 4, 8] and s.size == 12 and s.format == "<B3xIH2x"


def test_parser_refuses_what_it_cannot_read():
    with pytest.raises(abi.AbiError):
        abi.parse("struct t { struct other o; };")
    with pytest.raises(abi.AbiError):
        abi.parse("enum e { A, B };")
