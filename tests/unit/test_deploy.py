"""deploy/: the systemd unit is valid for systemd, gives its capabilities to the service alone,
and it and the DaemonSet point to a README section that exists."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit
UNIT = os.path.join(REPO, "deploy", "tcptrace-explain-exporter.service")


def read(*parts: str) -> str:
    with open(os.path.join(REPO, *parts), encoding="utf-8") as fh:
        return fh.read()


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as '-'."""
    out = set()
    for line in markdown.splitlines():
        m = re.match(r"^#{1,6} (.+)$", line)
        if m:
            out.add(re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-"))
    return out


def test_the_unit_documentation_link_names_a_readme_section_that_exists():
    doc = re.search(r"^Documentation=\S+README\.md#(\S+)$", read("deploy", "tcptrace-explain-exporter.service"), re.M)
    assert doc, "Documentation= must point to a README section"
    readme = read("README.md")
    assert doc.group(1) in anchors(readme)
    for f in ("tcptrace-explain-exporter.service", "daemonset.yaml"):
        for section in re.findall(r'section "([^"]+)"(?: > "([^"]+)")?', read("deploy", f)):
            for name in filter(None, section):
                assert re.search(rf"^#+ {re.escape(name)}$", readme, re.M), (f, name)


def test_capabilities_go_to_the_service_alone():
    text = read("deploy", "tcptrace-explain-exporter.service")
    bounding = re.search(r"^CapabilityBoundingSet=(.+)$", text, re.M)
    ambient = re.search(r"^AmbientCapabilities=(.+)$", text, re.M)
    assert bounding and ambient and set(bounding.group(1).split()) == set(ambient.group(1).split())
    assert "CAP_SYS_ADMIN" not in bounding.group(1)
    assert "NoNewPrivileges=yes" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_accepts_the_unit(tmp_path):
    # ExecStart pointed at this checkout's entry point: verify checks the binary exists
    exe = os.path.join(REPO, ".venv", "bin", "tcptrace-explain")
    if not os.path.exists(exe):
        pytest.skip("run scripts/setup.sh first")
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={exe}", read("deploy", "tcptrace-explain-exporter.service"),
                  flags=re.M)
    unit = tmp_path / "tcptrace-explain-exporter.service"
    unit.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "tcptrace-explain-exporter" not in r.stderr + r.stdout, r.stderr + r.stdout
