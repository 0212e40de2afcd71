"""Bounds of numeric settings, declared on the dataclass field, checked by one function.

Why declarative: a bound written next to the field (`port: int = bounded(1883, ge=1,
le=65535)`) is checked by the config validator (`config.build` calls `check_fields` on every
settings dataclass it builds), documented by docs/gen_reference.py (the type column shows the
range) and cannot drift from either. Every numeric value must also be finite, bound or not: a
NaN threshold compares false with every score (no alarm ever), an infinite hop never cuts a
window. Rules between two fields (`decision.k <= decision.n`, `mqtt.reconnect_min <=
mqtt.reconnect_max`) live in the class's `__post_init__`, which calls `check_fields` first so
that a settings object built in Python is checked like one read from YAML.

This module imports nothing of the agent's: every settings module can use it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, TypeVar

from edge_agent.errors import ConfigError

T = TypeVar("T")

BOUNDS = ("ge", "gt", "le", "lt")
"""Metadata keys of a bounded field: >=, >, <=, < (any subset)."""


def bounded(
    default: T,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> T:
    """A dataclass field with `default` whose value must satisfy the given bounds (None, for an
    optional field, is always allowed). Typed as its default so `x: int = bounded(1, ge=1)`
    reads like a plain default to mypy."""
    meta = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    f: T = dataclasses.field(default=default, metadata=meta)
    return f


def describe(meta: Any, integer: bool = False) -> str:
    """The bounds in words: `>= 1`, `in [1, 65535]`, `in (0, 1]`; "" when unbounded."""
    lo = ("[", meta["ge"]) if "ge" in meta else ("(", meta["gt"]) if "gt" in meta else None
    hi = ("]", meta["le"]) if "le" in meta else (")", meta["lt"]) if "lt" in meta else None

    def num(x: float) -> str:
        return str(int(x)) if integer or float(x).is_integer() else f"{x:g}"

    if lo and hi:
        return f"in {lo[0]}{num(lo[1])}, {num(hi[1])}{hi[0]}"
    if lo:
        return f"{'>=' if lo[0] == '[' else '>'} {num(lo[1])}"
    if hi:
        return f"{'<=' if hi[0] == ']' else '<'} {num(hi[1])}"
    return ""


def _within(value: float, meta: Any) -> bool:
    return not (
        ("ge" in meta and value < meta["ge"])
        or ("gt" in meta and value <= meta["gt"])
        or ("le" in meta and value > meta["le"])
        or ("lt" in meta and value >= meta["lt"])
    )


def value_problem(v: float, meta: Any) -> str | None:
    """What is wrong with the number `v` under the bounds `meta` (a `bounded` field's metadata),
    in words ("expected a finite number, got nan"), or None when nothing is."""
    integer = isinstance(v, int)
    kind = "an integer" if integer else "a number"
    if not math.isfinite(v):
        return f"expected a finite number, got {v}"
    if not _within(v, meta):
        return f"expected {kind} {describe(meta, integer)}, got {v}"
    return None


def field_problem(cls: type, name: str, v: float) -> str | None:
    """`value_problem` for field `name` of settings dataclass `cls`: a command-line flag that
    sets the same quantity as a config field (`score --hop`, `windows.hop`) is checked against
    the field's own bounds, so the two cannot drift."""
    meta = next(f.metadata for f in dataclasses.fields(cls) if f.name == name)
    return value_problem(v, meta)


def check_fields(obj: Any, key: str) -> None:
    """ConfigError naming `key.field` for the first numeric field of dataclass `obj` that is
    not finite or is outside its `bounded` range (nested dataclasses are checked when built)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue
            problem = value_problem(v, f.metadata)
            if problem is not None:
                raise ConfigError(f"{key}.{f.name}: {problem}" if key else f"{f.name}: {problem}")
