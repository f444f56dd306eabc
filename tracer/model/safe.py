"""Untrusted text made safe to show: the one sanitizer for terminals and for metric labels.

Untrusted means anything from the traced world (process and thread names, which any process
can set with prctl(PR_SET_NAME)) or from a recording (its header carries the names of TCP
states and reset reasons, and a recording can come from anyone).

printable(): control characters, including ESC, DEL and the C1 range (0x80-0x9f, where a
terminal may take 0x9b as CSI), become visible \\xNN escapes, so a name can never move the
cursor, clear the screen, change colours, retitle the terminal or write the clipboard (OSC 52).
Rich markup is never interpreted because the console builds rich Text objects, not markup.

label_value(): the same for Prometheus label values. The exposition format escapes only
backslash, double quote and newline (prometheus_client does that when it renders); a raw CR,
ESC or BEL inside a label value passes through and breaks parsers and terminals reading
/metrics, so they are replaced first, the same way.
"""

from __future__ import annotations


def _is_control(o: int) -> bool:
    return o < 0x20 or 0x7F <= o < 0xA0


def printable(s: str) -> str:
    out = []
    for ch in s:
        o = ord(ch)
        if _is_control(o):
            out.append(f"\\x{o:02x}")
        else:
            out.append(ch)
    return "".join(out)


def label_value(s: str) -> str:
    """A label value with no control characters (prometheus_client escapes \\ and " itself)."""
    return printable(s)
