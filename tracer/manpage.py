"""tcptrace-explain(8), generated from the command line's own definition (tracer/cli.py), so the
man page lists exactly the options, help texts, examples and exit codes `--help` shows.

    python -m tracer.manpage > tcptrace-explain.8      (scripts/setup.sh installs it)
    man -l tcptrace-explain.8
"""

from __future__ import annotations

import re
import sys
from datetime import date
from typing import Optional

import click

from tracer import __version__

NAME = "tcptrace-explain"


def esc(text: str) -> str:
    """Roff-safe text: backslashes, leading control characters, and hyphens of options."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line for line in text.split("\n"))


def _metavar(p: click.Parameter, ctx: click.Context) -> str:
    try:
        return p.make_metavar(ctx)       # click 8.2+
    except TypeError:
        return p.make_metavar()          # type: ignore[call-arg]  # older click


def _option(p: click.Option, ctx: click.Context) -> list[str]:
    names = ", ".join(f"\\fB{esc(o)}\\fR" for o in [*p.opts, *p.secondary_opts])
    if not p.is_flag and not p.count:
        names += f" \\fI{esc(_metavar(p, ctx).replace(' RANGE', ''))}\\fR"
    text = p.help or ""
    if p.show_default and p.default is not None and not p.is_flag:
        text += f" (default: {p.default})"
    return [".TP", names, esc(" ".join(text.split()))]


def _epilog(text: Optional[str]) -> list[str]:
    """An epilog's blocks (each after click's \\b no-rewrap marker) as literal text."""
    if not text:
        return []
    out: list[str] = []
    for block in text.strip("\n").split("\b"):
        block = block.strip("\n")
        if not block:
            continue
        out += [".PP", ".nf", esc(block), ".fi"]
    return out


def _options(cmd: click.Command, ctx: click.Context) -> list[str]:
    out: list[str] = []
    for p in cmd.get_params(ctx):
        if isinstance(p, click.Option) and not p.hidden:
            out += _option(p, ctx)
    return out


def _usage(cmd: click.Command, ctx: click.Context) -> str:
    return " ".join(cmd.collect_usage_pieces(ctx))


def _exit_codes(doc: str) -> list[str]:
    m = re.search(r"Exit codes: (.*?)\n\n", doc + "\n\n", re.S)
    if m is None:
        return []
    out = []
    for item in " ".join(m.group(1).split()).rstrip(".").split(";"):
        code, _, what = item.strip().partition(" ")
        out += [".TP", f"\\fB{code}\\fR", esc(what)]
    return out


def render(group: click.Group, doc: str, today: Optional[date] = None) -> str:
    ctx = click.Context(group, info_name=NAME, **group.context_settings)
    day = (today or date.today()).isoformat()
    lines = [
        f'.TH TCPTRACE\\-EXPLAIN 8 "{day}" "{NAME} {__version__}" "System Administration"',
        ".nh", ".SH NAME", f"{esc(NAME)} \\- explain every TCP reset and abort on a Linux host",
        ".SH SYNOPSIS",
        f".B {esc(NAME)}", esc(_usage(group, ctx).replace("COMMAND [ARGS]...", "")),
    ]
    commands = [(n, c) for n, c in sorted(group.commands.items()) if not c.hidden]
    for name, cmd in commands:
        sub = click.Context(cmd, info_name=name, parent=ctx)
        lines += [".br", f".B {esc(NAME)} {esc(name)}", esc(_usage(cmd, sub))]
    lines += [".SH DESCRIPTION", esc(" ".join((group.help or "").split()))]
    lines += [".SH OPTIONS"] + _options(group, ctx)
    lines += [".SH COMMANDS"]
    for name, cmd in commands:
        sub = click.Context(cmd, info_name=name, parent=ctx)
        lines += [".SS " + esc(f"{NAME} {name}"), esc(" ".join((cmd.help or "").split()))]
        lines += _options(cmd, sub) + _epilog(cmd.epilog)
    lines += [".SH EXAMPLES"] + _epilog(group.epilog)
    lines += [".SH EXIT STATUS"] + _exit_codes(doc)
    lines += [".SH FILES", ".TP", "\\fI/sys/kernel/tracing\\fR",
              "tracefs: the tracepoint formats (readable by root only on most hosts).",
              ".TP", "\\fI/sys/kernel/btf/vmlinux\\fR", "BTF: the socket fields' offsets.",
              ".SH SEE ALSO", "\\fBss\\fR(8), \\fBnstat\\fR(8), \\fBtcpdump\\fR(8), \\fBbpftool\\fR(8)"]
    return "\n".join(lines) + "\n"


def main() -> int:
    from tracer import cli

    sys.stdout.write(render(cli.cli, cli.__doc__ or ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
