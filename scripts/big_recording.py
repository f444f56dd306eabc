"""Make a large recording from the real ones in tests/data/recordings, for the replay benchmark.

Each real recording is a scene (the records of one reset story); the scenes are repeated, in
turn, until COUNT records are written. Each copy is moved in time (every timestamp shifted
alike, a copy GAP_NS after the previous one ends, so the file is in time order as a live
run's is), to its own sockets (socket address and cookie offset) and its own ports (every
port of the copy mapped alike, so both ends of a connection still match), so that every copy
is explained as its own incidents, as the original is.

    .venv/bin/python scripts/big_recording.py --count 1000000 /tmp/big.jsonl
"""

from __future__ import annotations

import argparse
import base64
import glob
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tracer.model import record  # noqa: E402
from tracer.sinks import recording  # noqa: E402

GAP_NS = 20_000_000
TIME_FIELDS = ("ts_ns", "birth_ns", "estab_ns", "fin_ns", "close_ns", "state_ns", "last_send_ns", "last_recv_ns",
               "last_ack_ns", "destroy_ns", "fin_last_send_ns", "fin_last_recv_ns")
U64 = struct.Struct("<Q")
U16 = struct.Struct("<H")


def scenes(pattern: str) -> tuple[dict, list[list[bytes]], set[str]]:
    out = []
    local: set[str] = set()
    header = None
    for path in sorted(glob.glob(pattern)):
        rec = recording.load(path)
        raws = [r.ljust(record.RECORD_SIZE, b"\0") for r in rec.raw]
        if not raws:
            continue
        if header is None:
            header = {"format": recording.MAGIC, "version": recording.VERSION, "context": rec.context.to_json(),
                      "meta": {"generated_by": "scripts/big_recording.py"}}
        out.append(raws)
        # The middlebox verdicts need to know which addresses were the recording host's.
        local.update(recording.end_of(rec).get("local_addrs", []))
    assert header is not None, "no recordings"
    return header, out, local


def span(raws: list[bytes]) -> int:
    ts = [U64.unpack_from(r, record._LAYOUT.offset("ts_ns"))[0] for r in raws]
    return max(ts) - min(ts)


def copy(raws: list[bytes], k: int, base_ns: int) -> list[bytes]:
    off = {n: record._LAYOUT.offset(n) for n in TIME_FIELDS + ("skaddr", "cookie", "lport", "rport")}
    t0 = min(U64.unpack_from(r, off["ts_ns"])[0] for r in raws)
    out = []
    for r in raws:
        b = bytearray(r)
        for n in TIME_FIELDS:
            v = U64.unpack_from(b, off[n])[0]
            if v:
                U64.pack_into(b, off[n], v - t0 + base_ns)
        for n in ("skaddr", "cookie"):
            v = U64.unpack_from(b, off[n])[0]
            if v:
                U64.pack_into(b, off[n], (v + k * 4096) % (1 << 64))
        for n in ("lport", "rport"):
            v = U16.unpack_from(b, off[n])[0]
            if v:
                U16.pack_into(b, off[n], 1024 + (v + k * 7) % 64000)
        out.append(bytes(b))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--from", dest="pattern", default="tests/data/recordings/*.jsonl")
    ap.add_argument("out")
    a = ap.parse_args()
    header, sc, local = scenes(a.pattern)
    n = k = 0
    base = 10 ** 12
    with open(a.out, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(header) + "\n")
        while n < a.count:
            for raw in copy(sc[k % len(sc)], k, base)[:a.count - n]:
                fh.write('{"r":"' + base64.b64encode(raw).decode() + '"}\n')
                n += 1
            base += span(sc[k % len(sc)]) + GAP_NS   # copies never overlap in time
            k += 1
        fh.write(json.dumps({"end": {"counters": {"lost": 0, "filtered": 0, "records": n},
                                      "local_addrs": sorted(local)}}) + "\n")
    print(f"{a.out}: {n} records in {k} scenes", file=sys.stderr)


if __name__ == "__main__":
    main()
