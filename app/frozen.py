"""Building frozen slots dataclasses fast, for the replay's hot paths (issue 9 §4).

A frozen dataclass's generated `__init__` stores every field through `object.__setattr__`
(it has to get past the class's own `__setattr__`, which refuses), one Python-level call
per field: for the 11 fields of a `ZapCallRecord` that is most of its cost, and a replay
builds up to 10,000 of them per era. A slot's member descriptor stores a value with one C
call instead. `maker(cls)` writes, from `dataclasses.fields(cls)` (so it follows the
class as it is), a function that takes every field positionally and stores each through
its descriptor (a field `__init__` does not take gets its default): the same object
`cls(...)` builds, equal and hashed alike, at about half the cost. It refuses a class it
could not build exactly: not a frozen slots dataclass, one with a `__post_init__`, or a
field `__init__` does not take that has no plain default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def maker(cls: type[T]) -> Callable[..., T]:
    """A positional constructor of frozen slots dataclass `cls` (see module doc)."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a frozen slots dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__, which maker() would skip")
    fs = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = [f.name for f in fs if f.init]
    fixed = {f.name: f.default for f in fs if not f.init}
    if any(v is dataclasses.MISSING for v in fixed.values()):
        raise TypeError(f"{cls.__name__} has a field __init__ does not take and no plain default")
    env: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    env.update({f"_set_{f.name}": getattr(cls, f.name).__set__ for f in fs})
    env.update({f"_default_{n}": v for n, v in fixed.items()})
    args = ", ".join(names)
    stores = "".join(f"    _set_{n}(o, {n})\n" for n in names)
    stores += "".join(f"    _set_{n}(o, _default_{n})\n" for n in fixed)
    exec(f"def make({args}):\n    o = _new(_cls)\n{stores}    return o\n", env)  # noqa: S102 (names are fields)
    make = env["make"]
    make.__doc__ = f"{cls.__name__}({args}), built field by field through the slots' descriptors."
    return make
