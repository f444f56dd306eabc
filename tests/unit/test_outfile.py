"""Output files created as root: never through a link, never clobbering, mode 0600."""

from __future__ import annotations

import os
import stat

import pytest

from tracer.model.errors import OutputUnwritable
from tracer.sinks import outfile
from tracer.sinks.outfile import Existing


def test_a_new_file_is_created_0600_even_under_a_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        fd = outfile.open_output(str(tmp_path / "rec.jsonl"), "--record")
    finally:
        os.umask(old)
    os.close(fd)
    assert stat.S_IMODE(os.stat(tmp_path / "rec.jsonl").st_mode) == 0o600


def test_an_existing_recording_is_refused_and_kept(tmp_path):
    p = tmp_path / "rec.jsonl"
    p.write_text("earlier run\n")
    for call in (lambda: outfile.check(str(p), "--record"), lambda: outfile.open_output(str(p), "--record")):
        with pytest.raises(OutputUnwritable) as err:
            call()
        assert "already exists" in err.value.message and "--force" in err.value.remedy
    assert p.read_text() == "earlier run\n"


def test_a_symbolic_link_is_never_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = tmp_path / "rec.jsonl"
    link.symlink_to(victim)
    for existing in Existing:
        with pytest.raises(OutputUnwritable) as err:
            os.close(outfile.open_output(str(link), "--record", existing))
        assert "symbolic link" in err.value.message
    with pytest.raises(OutputUnwritable):
        outfile.check(str(link), "--ready-file")
    assert victim.read_text() == "precious\n" and link.is_symlink()


def test_force_replaces_the_name_without_writing_the_old_file(tmp_path):
    p = tmp_path / "rec.jsonl"
    p.write_text("old\n")
    other = tmp_path / "hardlink"
    os.link(p, other)
    fd = outfile.open_output(str(p), "--record", Existing.REPLACE)
    os.write(fd, b"new\n")
    os.close(fd)
    assert p.read_text() == "new\n" and other.read_text() == "old\n"


def test_append_adds_to_the_same_file(tmp_path):
    p = tmp_path / "rec.jsonl"
    p.write_text("one\n")
    fd = outfile.open_output(str(p), "--record", Existing.APPEND)
    os.write(fd, b"two\n")
    os.close(fd)
    assert p.read_text() == "one\ntwo\n"


@pytest.mark.parametrize("target, text", [
    ("missing-dir/rec.jsonl", "does not exist"),
    (".", "not a regular file"),
])
def test_unwritable_targets_say_why(tmp_path, target, text):
    with pytest.raises(OutputUnwritable) as err:
        outfile.check(str(tmp_path / target), "--record", Existing.REPLACE)
    assert text in err.value.message and err.value.exit_code == 12


def test_a_kernel_file_as_ready_file_is_refused():
    with pytest.raises(OutputUnwritable) as err:
        outfile.check("/proc/version", "--ready-file")
    assert "/proc/version" in err.value.message and "already exists" in err.value.message
