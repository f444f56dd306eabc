"""What building a frozen dataclass costs: the generated __init__ against tracer.model.frozen's
fast_init, for a class of Record's size (55 fields), and one attribute read after each.

    .venv/bin/python scripts/bench/frozen_init.py
"""

from __future__ import annotations

import dataclasses
import os
import sys
import timeit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from tracer.model.frozen import fast_init  # noqa: E402

FIELDS = [(f"f{i}", int) for i in range(55)]


def main() -> None:
    generated = dataclasses.make_dataclass("Generated", FIELDS, frozen=True)
    fast = fast_init(dataclasses.make_dataclass("Fast", FIELDS, frozen=True))
    values = list(range(len(FIELDS)))
    for cls in (generated, fast):
        build = min(timeit.repeat("cls(*values)", number=20_000, repeat=7, globals={"cls": cls, "values": values}))
        read = min(timeit.repeat("obj.f3, obj.f20, obj.f50, obj.f7, obj.f9", number=200_000, repeat=7,
                                 globals={"obj": cls(*values)}))
        print(f"{cls.__name__:>9}: build {build / 20_000 * 1e6:5.2f} us, "
              f"five attribute reads {read / 200_000 * 1e9:4.0f} ns")


if __name__ == "__main__":
    main()
