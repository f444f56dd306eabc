"""The test directories are not packages, so pytest imports test files by their base name: two
files of one name in different tiers stop the whole collection ("import file mismatch")."""

from __future__ import annotations

import collections
import glob
import os

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit


def test_every_test_file_name_is_unique_across_tiers():
    names = collections.Counter(os.path.basename(p) for p in glob.glob(os.path.join(REPO, "tests", "*", "test_*.py")))
    assert not [n for n, k in names.items() if k > 1]
