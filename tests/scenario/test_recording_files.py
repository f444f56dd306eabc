"""Recordings and ready files as root meets them: symlinks planted by another user, earlier
recordings, kernel files, a full disk. Real tracer (the CLI), real refused connections on
loopback, a real tmpfs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from tests.conftest import REPO
from tests.lab.driver import Tracer
from tests.lab.loopback import closed_port, refused

pytestmark = pytest.mark.scenario
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tracer.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def sticky_tmp():
    """A /tmp-like directory: world-writable, sticky."""
    d = tempfile.mkdtemp(prefix="tte-sticky-")
    os.chmod(d, 0o1777)
    yield d
    shutil.rmtree(d)


@pytest.mark.parametrize("option", ["--record", "--ready-file"])
def test_a_symlink_planted_by_another_user_is_refused(sticky_tmp, tmp_path, option):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    planted = os.path.join(sticky_tmp, "out.jsonl")
    subprocess.run(AS_NOBODY + ["ln", "-s", str(victim), planted], check=True)
    assert os.stat(planted, follow_symlinks=False).st_uid != 0
    r = cli(option, planted, "--duration", "1")
    assert r.returncode == 12, r.stderr
    assert "symbolic link" in r.stderr and planted in r.stderr and "Traceback" not in r.stderr
    assert victim.read_text() == "precious\n" and os.path.islink(planted)


def test_an_existing_recording_is_kept_unless_force_or_append(tmp_path):
    rec = tmp_path / "rec.jsonl"
    port = closed_port()
    first = cli("--record", str(rec), "--port", str(port), "--duration", "0.5")
    assert first.returncode == 0, first.stderr
    assert oct(os.stat(rec).st_mode & 0o777) == "0o600"
    before = rec.read_bytes()
    again = cli("--record", str(rec), "--port", str(port), "--duration", "0.5")
    assert again.returncode == 12 and "already exists" in again.stderr and "--force" in again.stderr
    assert rec.read_bytes() == before

    t = Tracer(tmp_path, "--record", str(rec), "--append", "--json", "--port", str(port))
    t.wait_ready(time.monotonic() + 120)
    lport = refused(port)
    time.sleep(0.5)
    t.stop_text()
    assert rec.read_bytes().startswith(before)
    out = cli("replay", "--json", str(rec))
    assert out.returncode == 0, out.stderr
    assert lport in {json.loads(x)["lport"] for x in out.stdout.splitlines()}

    forced = cli("--record", str(rec), "--force", "--port", str(port), "--duration", "0.5")
    assert forced.returncode == 0, forced.stderr
    assert not rec.read_bytes().startswith(before[:200] + b"x") and rec.read_bytes().count(b'"format"') == 1


def test_a_kernel_file_as_ready_file_is_a_clear_error():
    r = cli("--ready-file", "/proc/version", "--duration", "1")
    assert r.returncode == 12 and "/proc/version" in r.stderr and "Traceback" not in r.stderr


@pytest.fixture
def small_tmpfs():
    d = tempfile.mkdtemp(prefix="tte-full-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tte-full", d], check=True)
    yield d
    subprocess.run(["umount", d], check=True)
    os.rmdir(d)


def test_disk_full_stops_the_recording_not_the_events(tmp_path, small_tmpfs):
    rec = os.path.join(small_tmpfs, "rec.jsonl")
    port = closed_port()
    t = Tracer(tmp_path, "--record", rec, "--json", "--port", str(port))
    t.wait_ready(time.monotonic() + 120)
    lports = []
    for _ in range(150):          # ~3 records of ~700 bytes each: far more than 16 KiB
        lports.append(refused(port))
        time.sleep(0.01)
    time.sleep(1.5)
    t.p.send_signal(15)
    out, err = t.p.communicate(timeout=60)
    assert t.p.returncode == 13, err
    assert "recording stopped: No space left on device" in err and "Traceback" not in err
    seen = {json.loads(x)["lport"] for x in out.splitlines()}
    assert set(lports) <= seen                      # every connect still explained
    shutil.copy(rec, tmp_path / "copy.jsonl")
    r = cli("replay", "--json", str(tmp_path / "copy.jsonl"))
    assert r.returncode == 0, r.stderr              # what was written replays
    assert 0 < len(r.stdout.splitlines()) < len(out.splitlines())
