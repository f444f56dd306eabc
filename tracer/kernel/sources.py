"""Where the BPF C sources are: package data of an installed wheel, or bpf/ of a checkout.

An installed package carries bpf/ as the namespace package ``tracer.bpf`` (pyproject.toml maps
the directory there). Running from a checkout (``python -m tracer.cli`` in the repository, or an
editable install) imports ``tracer`` from the source tree, whose bpf/ sits beside it. Either way
the caller gets a real directory: BCC compiles from a file path and resolves #include from -I.
"""

from __future__ import annotations

import importlib.resources
import os

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
