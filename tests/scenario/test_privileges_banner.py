"""doctor and the CLI's error boundary as an unprivileged user really meets them (setpriv to
uid nobody, with and without capabilities), and the start banner: the filters in force,
printed once tracing has started and never before a failure."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tracer import __version__
from tests.scenario.test_cli import start, stop

pytestmark = [pytest.mark.scenario, pytest.mark.skipif(os.geteuid() != 0, reason="setpriv to another uid needs root")]
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def caps(*names: str) -> list[str]:
    c = ",".join(f"+{n}" for n in names)
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", f"--inh-caps={c}", f"--ambient-caps={c}"]


def run(wrap: list[str], *args: str) -> subprocess.CompletedProcess:
    # cwd /: the unprivileged user may not read the worktree's parent; the venv's python is world-readable
    return subprocess.run([*wrap, sys.executable, "-m", "tracer.cli", *args], cwd="/", capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": REPO})


def test_doctor_as_nobody_reports_privileges_first_and_exits_3():
    r = run(NOBODY, "doctor")
    assert r.returncode == 3, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("FAIL  privileges: uid 65534: loading BPF programs needs root")
    assert "AmbientCapabilities=CAP_BPF CAP_PERFMON" in lines[1] and "never setcap the Python interpreter" in lines[1]
    assert "tracefs is not mounted" not in r.stdout and "Traceback" not in r.stdout + r.stderr
    assert "tracefs: /sys/kernel/tracing is readable by root only: tracepoints not checked" in r.stdout
    assert lines[-1] == "not privileged: fix the privileges first (exit 3)"
    assert sum(line.startswith("FAIL") for line in lines) == 1      # nothing else is blamed


def test_doctor_with_bpf_capabilities_but_another_uid_names_tracefs_as_the_privilege():
    r = run(caps("bpf", "perfmon"), "doctor")
    assert r.returncode == 3, r.stdout
    assert r.stdout.startswith("FAIL  privileges: uid 65534: /sys/kernel/tracing (tracefs) is readable by root only")


def test_the_capabilities_the_advice_names_are_enough_for_another_uid():
    r = run(caps("bpf", "perfmon", "dac_read_search"), "doctor")
    assert r.returncode == 0, r.stdout
    assert r.stdout.startswith("  ok  privileges: CAP_BPF and CAP_PERFMON, and tracefs is readable")
    assert "ready to trace" in r.stdout


def test_live_run_as_nobody_exits_3_before_any_other_check_or_banner():
    # an unwritable recording path and a netns name that does not exist would each fail too
    r = run(NOBODY, "--record", "/root/tte-no.jsonl", "--netns", "tte-no-such-ns", "--duration", "1")
    assert r.returncode == 3, r.stderr
    assert r.stderr.startswith("tcptrace-explain: error: loading BPF programs needs root") and r.stdout == ""
    assert not os.path.exists("/root/tte-no.jsonl")


def test_no_banner_before_a_failure_to_start():
    r = subprocess.run([sys.executable, "-m", "tracer.cli", "--pid", "4194303", "--port", "80", "--duration", "1"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 9 and r.stdout == "", r.stdout


def test_banner_states_the_filters_in_force_once_attached(tmp_path):
    p, _ = start(tmp_path, "--port", "9,10", "-4", "--verdict", "port_closed", "--uid", "0")
    out, _ = stop(p)
    first = out.splitlines()[0]
    assert first == (f"tcptrace-explain {__version__}: tracing TCP resets and aborts of uid 0; port 9,10; IPv4 only; "
                     "verdict port_closed; Ctrl-C for the summary")
    assert "every process" not in out
