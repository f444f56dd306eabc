"""The BPF sources as BCC gets them: parts inlined once, every BTF offset mandatory.

BCC rewrites map calls only in the main file it compiles, so tracer/kernel/sources.py inlines
the parts bpf/tte.bpf.c includes; every file under bpf/ must reach the compiler. A kernel field
offset the loader does not pass (-DTTE_OFF_*) must stop the compile instead of reading byte 0.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tracer.kernel import program, sources

pytestmark = pytest.mark.unit

BPF = sources.bpf_dir()
GCC = shutil.which("gcc")
needs_gcc = pytest.mark.skipif(GCC is None, reason="gcc is installed by scripts/setup.sh (test components)")


def _parts() -> list[str]:
    return sorted(n for n in os.listdir(BPF) if n.endswith((".c", ".h")))


def test_every_part_is_inlined_exactly_once():
    text = sources.translation_unit()
    for name in _parts():
        assert text.count(f'#line 1 "{os.path.join(BPF, name)}"') == 1, name
    assert not re.search(r'^\s*#\s*include\s+"', text, re.M), "a local include was left for BCC"
    # line directives point back into the main file after each part
    assert re.search(rf'^#line \d+ "{re.escape(sources.main_source())}"$', text, re.M)


def test_every_offset_the_program_reads_comes_from_btf():
    text = "".join(open(os.path.join(BPF, n), encoding="utf-8").read() for n in _parts())
    used = set(re.findall(r"\bTTE_OFF_(\w+)", text))
    assert used == set(program.FIELDS)


@needs_gcc
@pytest.mark.parametrize("missing", [sorted(program.FIELDS)[0], sorted(program.FIELDS)[-1]])
def test_a_missing_btf_offset_is_a_compile_error(missing):
    defs = [f"-DTTE_OFF_{k}=8" for k in program.FIELDS if k != missing]
    cmd = [GCC, "-E", "-ffreestanding", "-nostdinc", f"-I{BPF}", os.path.join(BPF, "config.bpf.h"), "-o", os.devnull]
    bad = subprocess.run(cmd + defs, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and f"TTE_OFF_{missing} is not defined" in bad.stderr
    good = subprocess.run(cmd + defs + [f"-DTTE_OFF_{missing}=8"], capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stderr
