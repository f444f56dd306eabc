"""The --json contract: the committed JSON Schema, kept in step with the code."""

from __future__ import annotations

import glob
import json
import os

import jsonschema
import pytest

from tests.unit.helpers import DATA
from tracer.model.verdicts import Confidence, Verdict, Who

pytestmark = pytest.mark.unit
SCHEMA_PATH = os.path.join(os.path.dirname(DATA), "..", "docs", "schema", "event.schema.json")


def schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return json.load(fh)


def test_schema_enums_match_the_code():
    p = schema()["properties"]
    assert set(p["verdict"]["enum"]) == {v.value for v in Verdict}
    assert set(p["who"]["enum"]) == {w.value for w in Who}
    assert set(p["confidence"]["enum"]) == {c.value for c in Confidence}


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(DATA, "golden", "*.json"))),
                         ids=lambda p: os.path.basename(p))
def test_every_golden_explanation_validates(path):
    validator = jsonschema.Draft202012Validator(schema())
    with open(path, encoding="utf-8") as fh:
        for event in json.load(fh):
            validator.validate(event)


def test_the_schema_rejects_an_unknown_verdict_or_missing_field():
    validator = jsonschema.Draft202012Validator(schema())
    with open(os.path.join(DATA, "golden", "unread_close.json"), encoding="utf-8") as fh:
        event = json.load(fh)[0]
    validator.validate(event)                      # the complete event is valid...
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(dict(event, verdict="no_such_verdict"))   # ...only the verdict changed
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({k: v for k, v in event.items() if k != "who"})
