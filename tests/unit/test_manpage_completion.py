"""The man page and the bash completion, generated from the CLI's definition: the man page
renders with `man -l` and lists every option of every command; the completion script loads in
bash and completes subcommands, options and their values; every --help has examples."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import click
import click.testing
import pytest

from tracer import cli as cli_mod
from tracer.completion import render as completion
from tracer.manpage import render as manpage

pytestmark = pytest.mark.unit
COMMANDS = ["", "replay", "merge", "doctor", "exporter"]


def visible_options(cmd: click.Command) -> list[str]:
    ctx = click.Context(cmd, info_name="x", **cli_mod.cli.context_settings)
    return [o for p in cmd.get_params(ctx) if isinstance(p, click.Option) and not p.hidden for o in p.opts]


def command(name: str) -> click.Command:
    return cli_mod.cli if not name else cli_mod.cli.commands[name]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> str:
    if shutil.which("man") is None:
        pytest.skip("man-db is not installed (scripts/setup.sh installs it)")
    page = tmp_path_factory.mktemp("man") / "tcptrace-explain.8"
    page.write_text(manpage(cli_mod.cli, cli_mod.__doc__ or ""), encoding="utf-8")
    r = subprocess.run(["man", "--warnings", "-P", "cat", "-l", str(page)], capture_output=True, text=True,
                       env={**os.environ, "MANWIDTH": "200", "LC_ALL": "C.UTF-8"}, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return r.stdout


def test_man_page_renders_every_section(rendered):
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "EXAMPLES", "EXIT STATUS", "SEE ALSO"):
        assert re.search(rf"^{section}$", rendered, re.M), section
    assert "tcptrace-explain - explain every TCP reset and abort on a Linux host" in rendered


@pytest.mark.parametrize("name", COMMANDS, ids=lambda n: n or "tcptrace-explain")
def test_man_page_lists_every_visible_option_of_every_command(rendered, name):
    text = rendered if not name else rendered.split(f"   tcptrace-explain {name}\n", 1)[1]
    for opt in visible_options(command(name)):
        assert re.search(rf"(^ +|, ){re.escape(opt)}\b", text, re.M), (name, opt)
    assert "--print-program" not in rendered and "--io-hooks" not in rendered     # hidden stay hidden


def test_man_page_exit_status_is_the_clis(rendered):
    codes = re.findall(r"(\d+) ([^;]+)", re.search(r"Exit codes: (.*?)\n\n", cli_mod.__doc__ + "\n\n", re.S).group(1))
    section = rendered.split("EXIT STATUS", 1)[1].split("FILES", 1)[0]
    got = re.findall(r"^\s+(\d+)\s+(.+)$", section, re.M)
    assert [c for c, _ in got] == [c for c, _ in codes] and len(got) >= 14
    assert dict(got)["3"] == "not privileged"


@pytest.mark.parametrize("name", COMMANDS, ids=lambda n: n or "tcptrace-explain")
def test_every_help_has_examples(name):
    r = click.testing.CliRunner().invoke(cli_mod.cli, [*([name] if name else []), "--help"])
    assert r.exit_code == 0 and "Examples:" in r.output
    examples = r.output.split("Examples:", 1)[1]
    assert "tcptrace-explain" in examples and (not name or name in examples)


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("comp") / "tcptrace-explain"
    path.write_text(completion(cli_mod.cli), encoding="utf-8")
    return str(path)


def complete(script: str, *words: str) -> list[str]:
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    body = (f"source {script}; COMP_WORDS=(tcptrace-explain {quoted}); COMP_CWORD={len(words)}; "
            'tcptrace_explain_out=; _tcptrace_explain; printf "%s\\n" "${COMPREPLY[@]}"')
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", body], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return [w for w in r.stdout.splitlines() if w]


def test_completion_script_loads_in_bash(script):
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", f"source {script}; complete -p tcptrace-explain"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.strip() == "complete -o filenames -F _tcptrace_explain tcptrace-explain"


def test_completion_of_subcommands_options_and_values(script, tmp_path):
    assert complete(script, "re") == ["replay"]
    assert set(complete(script, "")) == {"replay", "merge", "doctor", "exporter"}
    assert complete(script, "replay", "--verd") == ["--verdict"]
    assert complete(script, "--com") == ["--comm", "--compact"]
    assert complete(script, "replay", "--verdict", "stale") == ["stale_after_idle"]
    assert complete(script, "--verdict", "port_closed,conn") == ["port_closed,connection_refused",
                                                                "port_closed,connect_abandoned"]
    assert complete(script, "--uid", "nobod") == ["nobody"]
    assert str(os.getpid()) in complete(script, "-p", str(os.getpid()))
    assert complete(script, "--duration", "") == []
    (tmp_path / "rec-one.jsonl").write_text("")
    assert complete(script, "replay", str(tmp_path / "rec-")) == [str(tmp_path / "rec-one.jsonl")]
    assert "--listen" in complete(script, "exporter", "--li")
    assert complete(script, "doctor", "-") == ["-h", "--help"]


def test_every_visible_option_is_completed(script):
    for name in COMMANDS:
        words = [name] if name else []
        offered = set(complete(script, *words, "-"))
        assert set(visible_options(command(name))) <= offered, name
