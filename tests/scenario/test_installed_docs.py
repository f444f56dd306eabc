"""What scripts/setup.sh installed (it runs before the suite): the man page where `man` finds
it, and the bash completion where bash-completion loads it on first use."""

from __future__ import annotations

import os
import subprocess

import pytest

pytestmark = pytest.mark.scenario


def test_man_finds_and_renders_the_installed_page():
    r = subprocess.run(["man", "-w", "tcptrace-explain"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, "scripts/setup.sh did not install the man page"
    assert os.path.realpath(r.stdout.strip()).endswith("/share/man/man8/tcptrace-explain.8")
    page = subprocess.run(["man", "-P", "cat", "tcptrace-explain"], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "MANWIDTH": "120"})
    assert page.returncode == 0 and "EXIT STATUS" in page.stdout and "--verdict" in page.stdout


def test_bash_completion_loads_the_installed_script_on_demand():
    loader = "/usr/share/bash-completion/bash_completion"
    if not os.path.exists(loader):
        pytest.skip("bash-completion is not installed")
    body = f"source {loader}; _completion_loader tcptrace-explain; complete -p tcptrace-explain"
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", body], capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == "complete -o filenames -F _tcptrace_explain tcptrace-explain", r.stderr
