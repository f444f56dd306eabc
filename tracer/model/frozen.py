"""A cheaper dataclasses.replace for the frozen dataclasses of the hot path.

dataclasses.replace calls __init__ again, and a frozen dataclass's __init__ sets every field
with object.__setattr__: for a 50-field Record or a 40-field Explanation that was a fifth of
replay's time, for a copy that changes one or two fields. `evolve` copies the instance's
__dict__ and sets the changed fields, which is what replace does for classes that have no
__post_init__, no InitVar and no init=False fields (checked once per class; others fall back
to dataclasses.replace). Unknown field names are a TypeError, as with replace.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")

_PLAIN: dict[type, frozenset[str]] = {}


def _plain_fields(cls: type) -> frozenset[str] | None:
    known = _PLAIN.get(cls)
    if known is None:
        fields = dataclasses.fields(cls)
        plain = (not hasattr(cls, "__post_init__") and "__slots__" not in cls.__dict__
                 and all(f.init for f in fields))
        known = frozenset(f.name for f in fields) if plain else frozenset()
        _PLAIN[cls] = known
    return known or None


def evolve(obj: T, **changes: Any) -> T:
    """dataclasses.replace(obj, **changes), without running __init__ again."""
    cls = type(obj)
    names = _plain_fields(cls)
    if names is None:
        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    for k in changes:
        if k not in names:
            raise TypeError(f"{cls.__name__} has no field {k!r}")
    new = object.__new__(cls)
    d = new.__dict__
    d.update(obj.__dict__)
    d.update(changes)
    return new


_NO_VALUE = object()


def fast_init(cls: type[T]) -> type[T]:
    """Give a frozen dataclass an __init__ that fills the instance's __dict__ directly: the
    generated one calls object.__setattr__ once per field, three times the cost for the
    55 fields of a Record (measured: scripts/bench/frozen_init.py). Same parameters, defaults
    and default factories; the class stays frozen (setting a field still raises) and keeps
    its generated eq, hash and repr. Only for classes `evolve` can copy (no __post_init__, no
    InitVar, no init=False fields, no slots), checked here.

    Instances pickle as their class and field values, rebuilt through this __init__: a third
    less to send and to rebuild than the default __dict__ state (replay sends cases to a second
    process: tracer/forked.py)."""
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__} is not a frozen dataclass")
    if _plain_fields(cls) is None or any(f.kw_only for f in dataclasses.fields(cls)):
        raise TypeError(f"{cls.__name__} has fields fast_init cannot fill")
    env: dict[str, Any] = {"_NO_VALUE": _NO_VALUE}
    params, body = [], ["    d = self.__dict__"]
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            env[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            env[f"_factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_NO_VALUE")
            body.append(f"    if {f.name} is _NO_VALUE: {f.name} = _factory_{f.name}()")
        else:
            params.append(f.name)
        body.append(f"    d[{f.name!r}] = {f.name}")
    src = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body) + "\n"
    exec(src, env)
    init = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[method-assign]
    # __init__ above and evolve() keep __dict__ in field order, so its values are the
    # arguments; an attribute set outside them would make the tuple too long, and loading fail
    # loudly (a TypeError), never shift a value into another field.
    def __reduce__(self: Any) -> tuple[type, tuple[Any, ...]]:
        return (type(self), tuple(self.__dict__.values()))

    cls.__reduce__ = __reduce__  # type: ignore[method-assign]
    return cls
