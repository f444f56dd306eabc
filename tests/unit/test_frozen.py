"""evolve: the same copies as dataclasses.replace, for the hot path's frozen dataclasses."""

from __future__ import annotations

import dataclasses

import pytest

from tests.unit.helpers import BASE
from tracer.model.frozen import evolve, fast_init

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


@dataclasses.dataclass(frozen=True)
class _Generated:
    a: int
    b: str = "b"
    c: dict = dataclasses.field(default_factory=dict)


_Fast = fast_init(dataclasses.make_dataclass(
    "_Fast", [("a", int), ("b", str, dataclasses.field(default="b")), ("c", dict, dataclasses.field(default_factory=dict))],
    frozen=True))


def test_fast_init_builds_what_the_generated_init_builds():
    for args, kw in [((1,), {}), ((1, "x"), {}), ((1,), {"c": {"k": 2}}), ((), {"a": 3, "b": "y", "c": {}})]:
        slow, fast = _Generated(*args, **kw), _Fast(*args, **kw)
        assert dataclasses.asdict(slow) == dataclasses.asdict(fast)
        assert repr(fast).replace("_Fast", "_Generated") == repr(slow)
    assert _Fast(1) == _Fast(1) and _Fast(1) != _Fast(2)
    assert _Fast(1).c is not _Fast(1).c              # a fresh value from the factory each time
    with pytest.raises(dataclasses.FrozenInstanceError):
        _Fast(1).a = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        _Fast()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        _Fast(1, d=4)  # type: ignore[call-arg]


def test_the_hot_path_classes_build_as_their_generated_init_would():
    from tracer.model.record import Record
    generated = dataclasses.dataclass(frozen=True)(type("Plain", (), {"__annotations__": Record.__annotations__}))
    values = {f.name: getattr(BASE, f.name) for f in dataclasses.fields(Record)}
    assert dataclasses.asdict(Record(**values)) == dataclasses.asdict(generated(**values)) == dataclasses.asdict(BASE)
    assert hash(Record(**values)) == hash(BASE) and Record(**values) == BASE


def test_fast_init_refuses_what_it_cannot_fill():
    @dataclasses.dataclass(frozen=True)
    class Post:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclasses.dataclass
    class Mutable:
        a: int

    for cls in (Post, Mutable):
        with pytest.raises(TypeError):
            fast_init(cls)


def test_fast_init_instances_pickle_as_their_fields_whatever_their_history():
    import pickle

    from tracer.explain.case import Case
    from tracer.model.record import RecordType

    evolved = evolve(BASE, comm="other", pid=7)      # changed fields keep their place
    case = Case(event=RecordType.RESET_RECEIVED, peer=evolved, flags=frozenset({"connected"}), idle_s=1.5)
    for obj in (BASE, evolved, case):
        back = pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        assert back == obj and type(back) is type(obj)
        assert dataclasses.asdict(back) == dataclasses.asdict(obj)
    assert len(pickle.dumps(BASE)) < len(pickle.dumps(dataclasses.asdict(BASE)))   # values only, no names


def test_an_attribute_outside_the_fields_makes_loading_fail_loudly():
    import pickle

    odd = evolve(BASE)
    object.__setattr__(odd, "extra", 1)
    with pytest.raises(TypeError):
        pickle.loads(pickle.dumps(odd))
