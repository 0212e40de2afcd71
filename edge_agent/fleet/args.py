"""Arguments of remote commands, checked: each bad one is a one-line FleetError naming it.

A remote command's `args` object comes from the broker, so nothing in it is trusted: unknown
keys are refused (a misspelt `false_alarm_per_day` must not silently fall back to a default),
numbers must be finite and in range, names must be names.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

from edge_agent.fleet.messages import FleetError


class Args:
    """A command's `args`, read key by key (see module docstring)."""

    def __init__(self, command: str, args: Mapping[str, Any], known: Collection[str]) -> None:
        unknown = sorted(set(args) - set(known))
        if unknown:
            raise FleetError(
                f"{command}: unknown argument(s) {', '.join(unknown)} (expected: "
                f"{', '.join(sorted(known)) or 'none'})"
            )
        self.command = command
        self.args = dict(args)

    def _bad(self, key: str, expected: str) -> FleetError:
        shown = repr(self.args[key])
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        return FleetError(f"{self.command}: args.{key}: expected {expected}, got {shown}")

    def number(
        self,
        key: str,
        default: float | None = None,
        *,
        ge: float | None = None,
        gt: float | None = None,
        le: float | None = None,
    ) -> float:
        """A finite number within the bounds; `default` when absent (None: required)."""
        if key not in self.args:
            if default is None:
                raise FleetError(f"{self.command}: args.{key}: required")
            return default
        v = self.args[key]
        bounds = " and ".join(
            f"{op} {b:g}" for op, b in ((">=", ge), (">", gt), ("<=", le)) if b is not None
        )
        expected = f"a number {bounds}".strip()
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise self._bad(key, expected)
        if (
            (ge is not None and v < ge)
            or (gt is not None and v <= gt)
            or (le is not None and v > le)
        ):
            raise self._bad(key, expected)
        return float(v)

    def integer(self, key: str, default: int, *, ge: int = 0, le: int | None = None) -> int:
        if key not in self.args:
            return default
        v = self.args[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < ge or (le is not None and v > le):
            raise self._bad(key, f"an integer >= {ge}" + (f" and <= {le}" if le else ""))
        return v

    def flag(self, key: str, default: bool = False) -> bool:
        if key not in self.args:
            return default
        v = self.args[key]
        if not isinstance(v, bool):
            raise self._bad(key, "true or false")
        return v

    def string(
        self, key: str, default: str | None = None, choices: Collection[str] | None = None
    ) -> str:
        if key not in self.args:
            if default is None:
                raise FleetError(f"{self.command}: args.{key}: required")
            return default
        v = self.args[key]
        if not isinstance(v, str) or (choices is not None and v not in choices):
            raise self._bad(key, f"one of {', '.join(choices)}" if choices else "a string")
        return v

    def names(self, key: str) -> list[str] | None:
        """A list of plain file names (no folders), or None when absent."""
        if key not in self.args:
            return None
        v = self.args[key]
        if (
            not isinstance(v, list)
            or not v
            or not all(
                isinstance(x, str) and x and "/" not in x and "\\" not in x and x not in (".", "..")
                for x in v
            )
        ):
            raise self._bad(key, "a non-empty list of file names (no folders)")
        return list(v)

    def monitor(self, monitors: Mapping[str, str]) -> tuple[str, str]:
        """(monitor name, its section): `monitor` names one of the agent's; it may be left out
        when the agent has only one."""
        if "monitor" not in self.args:
            if len(monitors) == 1:
                name = next(iter(monitors))
                return name, monitors[name]
            raise FleetError(
                f"{self.command}: args.monitor: required (this agent has "
                f"{', '.join(sorted(monitors))})"
            )
        name = self.args["monitor"]
        if not isinstance(name, str) or name not in monitors:
            raise FleetError(
                f"{self.command}: args.monitor: no monitor {name!r} on this agent "
                f"(has {', '.join(sorted(monitors))})"
            )
        return name, monitors[name]
