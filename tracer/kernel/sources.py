"""Where the BPF C sources are: package data of an installed wheel, or bpf/ of a checkout.

An installed package carries bpf/ as the namespace package ``tracer.bpf`` (pyproject.toml maps
the directory there). Running from a checkout (``python -m tracer.cli`` in the repository, or an
editable install) imports ``tracer`` from the source tree, whose bpf/ sits beside it. Either way
the caller gets a real directory.

BCC rewrites map calls (``socks.lookup(&key)``) only in the main file it compiles, not in the
files that file includes, so ``translation_unit()`` hands it bpf/tte.bpf.c with every part it
includes from bpf/ inlined, each between ``#line`` directives so compiler messages still name
the file and line the code came from.
"""

from __future__ import annotations

import importlib.resources
import os
import re

MAIN = "tte.bpf.c"


def bpf_dir() -> str:
    try:
        found = importlib.resources.files("tracer.bpf")
    except ModuleNotFoundError:
        found = None
    if found is not None:
        # tracer.bpf is a namespace package (no __init__.py): files() gives a MultiplexedPath,
        # whose children are real paths.
        main = found.joinpath(MAIN)
        if main.is_file():
            return os.path.dirname(str(main))
    checkout = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bpf")
    return checkout


def main_source() -> str:
    return os.path.join(bpf_dir(), MAIN)


def header(name: str) -> str:
    return os.path.join(bpf_dir(), name)


_LOCAL_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"/]+)"\s*$')


def translation_unit() -> str:
    """bpf/tte.bpf.c with its #include "..." parts from bpf/ inlined, each once."""
    return _expand(main_source(), set())


def _expand(path: str, seen: set[str]) -> str:
    out: list[str] = [f'#line 1 "{path}"\n']
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            m = _LOCAL_INCLUDE.match(line)
            part = header(m.group(1)) if m else ""
            if not m or not os.path.isfile(part):
                out.append(line)
                continue
            if part not in seen:
                seen.add(part)
                out.append(_expand(part, seen))
            out.append(f'#line {n + 1} "{path}"\n')
    return "".join(out)
