"""Compile and load one program variant; run by tests/load/test_program.py.

Usage: compile_variant.py OPTIONS_JSON. Prints one JSON line: the detected layout flags and
whether the kernel verifier accepted every program. Run inside a private mount namespace
when the test has bind-mounted another kernel's format files over the live ones.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tracer.kernel import program  # noqa: E402
from tracer.kernel import host as kernel
from tracer.kernel.btf import Btf  # noqa: E402
from tracer.kernel.features import read_features  # noqa: E402
from tracer.kernel.loader import Loader  # noqa: E402
from tracer.model.options import Options  # noqa: E402


def main() -> int:
    raw = json.loads(sys.argv[1])
    for key in ("pids", "ports", "comms"):
        if key in raw:
            raw[key] = frozenset(raw[key])
    opts = Options(**raw)
    f = read_features()
    prog = program.build(opts, f, Btf.load(), kernel.detect_hz() or 250)
    loader = Loader(prog)
    loader.load(pids=opts.pids, ports=opts.ports, comms=opts.comms)
    loader.close()
    print(json.dumps({
        "sockaddr": f.rst_layout_sockaddr, "reason": f.rst_has_reason, "state": f.rst_has_state,
        "family": f.rst_has_family, "io_hooks": prog.io_hooks, "loaded": True,
        "cflags": [c for c in prog.cflags if c.startswith("-DTTE_RST") or c.startswith("-DTTE_FILTER") or c.startswith("-DTTE_IO")],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
