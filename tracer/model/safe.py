"""Untrusted text (process and thread names, which any process can set) made safe to show.

Control characters, including ESC and the C1 range, become visible \\xNN escapes, so a name
can never move the cursor, change colours or retitle the terminal. Rich markup is never
interpreted because the console builds rich Text objects, not markup strings.
"""

from __future__ import annotations


def printable(s: str) -> str:
    out = []
    for ch in s:
        o = ord(ch)
        if o < 0x20 or 0x7F <= o < 0xA0:
            out.append(f"\\x{o:02x}")
        else:
            out.append(ch)
    return "".join(out)
