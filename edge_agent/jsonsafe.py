"""Strict JSON for everything the project writes or reads as data: no NaN, no infinities.

Python's `json` writes `NaN` and `Infinity` by default and reads them back, but neither is
JSON: a consumer of `--json` lines or of an MQTT payload (a JavaScript dashboard, `jq`, Home
Assistant) rejects the whole line. Worse, a NaN that got this far means a number upstream is
broken (a NaN threshold never alarms), so writing it silently hides the fault. `dumps` refuses
instead, naming the offending fields; `loads` refuses the constants on the way in, so a hand-
edited manifest cannot smuggle them into a bundle either.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from edge_agent.errors import EdgeAgentError


class NonFiniteError(EdgeAgentError, ValueError):
    """A value to be written as JSON (or read from JSON) is NaN or infinite."""


def nonfinite_fields(obj: Any, prefix: str = "") -> list[str]:
    """Dotted paths (`a.b[2]`) of the NaN / infinite floats in a JSON-like value."""
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else [prefix or "value"]
    if isinstance(obj, Mapping):
        out: list[str] = []
        for k, v in obj.items():
            out += nonfinite_fields(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(obj, list | tuple):
        out = []
        for i, v in enumerate(obj):
            out += nonfinite_fields(v, f"{prefix}[{i}]")
        return out
    return []


def dumps(obj: Any, what: str, **kwargs: Any) -> str:
    """`json.dumps(obj, allow_nan=False, **kwargs)`; a NonFiniteError naming `what` and the
    offending fields instead of invalid JSON."""
    try:
        return json.dumps(obj, allow_nan=False, **kwargs)
    except ValueError:
        bad = nonfinite_fields(obj)
        if not bad:
            raise
        raise NonFiniteError(
            f"{what}: {', '.join(bad)}: NaN or infinite, not representable in JSON (not written)"
        ) from None


def _refuse(constant: str) -> Any:
    raise NonFiniteError(f"{constant} is not valid JSON (expected a finite number)")


def loads(text: str | bytes) -> Any:
    """`json.loads` that refuses `NaN`, `Infinity` and `-Infinity` (NonFiniteError)."""
    return json.loads(text, parse_constant=_refuse)


_NUMBER_LIST = re.compile(r"\[\s*(-?[0-9.e+-]+(?:,\s*-?[0-9.e+-]+)*)\s*\]")


def compact_number_lists(text: str) -> str:
    """Indented JSON with every list of plain numbers on one line: a bundle manifest's audio
    profiles hold ~20 000 numbers, one per line they made the manifest 3x larger (and the
    shipped demo over its size budget, tests/test_demo.py), while the rest stays readable."""
    return _NUMBER_LIST.sub(
        lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text
    )
