"""evolve: the same copies as dataclasses.replace, for the hot path's frozen dataclasses."""

from __future__ import annotations

import dataclasses

import pytest

from tests.unit.helpers import BASE
from tracer.model.frozen import evolve

pytestmark = pytest.mark.unit


def test_evolve_gives_what_replace_gives_and_leaves_the_original_alone():
    new = evolve(BASE, pid=7, comm="x")
    assert new == dataclasses.replace(BASE, pid=7, comm="x")
    assert (BASE.pid, BASE.comm) == (100, "srv") and type(new) is type(BASE)
    assert hash(new) == hash(dataclasses.replace(BASE, pid=7, comm="x"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        new.pid = 8  # type: ignore[misc]


def test_evolve_refuses_a_field_the_class_does_not_have():
    with pytest.raises(TypeError, match="no field 'pidd'"):
        evolve(BASE, pidd=7)


@dataclasses.dataclass(frozen=True)
class _Derived:
    a: int
    b: int = dataclasses.field(init=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "b", self.a * 2)


def test_classes_with_post_init_or_derived_fields_go_through_replace():
    assert evolve(_Derived(1), a=5).b == 10
