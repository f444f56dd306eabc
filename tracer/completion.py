"""Bash completion for tcptrace-explain, generated from the command line's definition
(tracer/cli.py): subcommands, every visible option of each, and the values of the options that
name something on this host (processes, users, network namespaces, cgroups, files, verdicts).

A static script: a TAB costs no Python start-up. scripts/setup.sh installs it:

    python -m tracer.completion > /usr/share/bash-completion/completions/tcptrace-explain
"""

from __future__ import annotations

import sys
from typing import Any, Mapping, Optional

import click

from tracer.cliparams import VERDICT_CODES

NAME = "tcptrace-explain"
FUNC = "_tcptrace_explain"

# parameter name -> bash that fills COMPREPLY for the word being completed ($cur, and $pre:
# what precedes its last comma, for the comma-list options)
VALUES = {
    "pids": 'COMPREPLY=($(compgen -P "$pre" -W "$(ps -e -o pid= 2>/dev/null)" -- "$last"))',
    "uids": 'COMPREPLY=($(compgen -P "$pre" -u -- "$last"))',
    "verdicts": f'COMPREPLY=($(compgen -P "$pre" -W "{" ".join(VERDICT_CODES)}" -- "$last"))',
    "netns_specs": 'COMPREPLY=($(compgen -P "$pre" -W "$(ip netns list 2>/dev/null | cut -d" " -f1)" -- "$last"))',
    "cgroups": ('local m; m=$(awk \'$3 == "cgroup2" {print $2; exit}\' /proc/mounts 2>/dev/null); '
                'COMPREPLY=($(cd "$m" 2>/dev/null && compgen -d -- "${cur#/}" | sed "s|^|/|"))'),
}


def _takes_value(p: click.Parameter) -> bool:
    return isinstance(p, click.Option) and not p.is_flag and not p.count


def _options(cmd: click.Command, settings: Optional[Mapping[str, Any]] = None) -> list[click.Option]:
    # the group's context settings (-h as well as --help) hold for its subcommands too
    ctx = click.Context(cmd, info_name=cmd.name, **(settings or {}))
    return [p for p in cmd.get_params(ctx) if isinstance(p, click.Option) and not p.hidden]


def _value_case(cmd: click.Command, settings: Mapping[str, Any]) -> list[str]:
    """`case $prev` arms: what to offer after each option that takes a value."""
    arms: dict[str, list[str]] = {}
    for p in _options(cmd, settings):
        if not _takes_value(p):
            continue
        if p.name in VALUES:
            body = VALUES[p.name]
        elif isinstance(p.type, click.Path):
            body = 'COMPREPLY=($(compgen -f -- "$cur"))'
        else:
            body = ":"            # a number or free text: nothing to offer
        arms.setdefault(body, []).extend([*p.opts, *p.secondary_opts])
    return [f"            {'|'.join(opts)}) {body}; return;;" for body, opts in arms.items()]


def _words(cmd: click.Command, settings: Mapping[str, Any]) -> str:
    return " ".join(o for p in _options(cmd, settings) for o in [*p.opts, *p.secondary_opts])


def render(group: click.Group) -> str:
    subs = {n: c for n, c in sorted(group.commands.items()) if not c.hidden}
    out = [
        f"# bash completion for {NAME}: generated from its command line by tracer/completion.py",
        "# (python -m tracer.completion); installed by scripts/setup.sh.",
        f"{FUNC}() {{",
        "    COMPREPLY=()",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="" cmd="" i',
        '    [ "$COMP_CWORD" -gt 0 ] && prev="${COMP_WORDS[COMP_CWORD-1]}"',
        '    local last="${cur##*,}"',
        '    local pre="${cur%"$last"}"',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        f'        case "${{COMP_WORDS[i]}}" in {"|".join(subs)}) cmd="${{COMP_WORDS[i]}}"; break;; esac',
        "    done",
        '    case "$cmd" in',
    ]
    for name, cmd in [("", group), *subs.items()]:
        files = name in ("replay", "merge")
        out += [f'        "{name}")', '            case "$prev" in']
        out += ["    " + arm for arm in _value_case(cmd, group.context_settings)]
        out += ["            esac"]
        words = _words(cmd, group.context_settings)
        if not name:
            out += [f'            if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "{words}" -- "$cur"));',
                    f'            else COMPREPLY=($(compgen -W "{" ".join(subs)}" -- "$cur")); fi;;']
        elif files:
            out += [f'            if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "{words}" -- "$cur"));',
                    '            else COMPREPLY=($(compgen -f -- "$cur")); fi;;']
        else:
            out += [f'            COMPREPLY=($(compgen -W "{words}" -- "$cur"));;']
    out += ["    esac", "}", f"complete -o filenames -F {FUNC} {NAME}", ""]
    return "\n".join(out)


def main() -> int:
    from tracer import cli

    sys.stdout.write(render(cli.cli))
    return 0


if __name__ == "__main__":
    sys.exit(main())
