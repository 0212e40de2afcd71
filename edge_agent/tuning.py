"""Threshold from a false-alarm budget: replay the k-of-n rule over the recorded normal scores.

"How often will it cry wolf?" is a question about the alarm DECISION, not about single windows:
with k-of-n voting, a threshold that 5 % of windows exceed may still raise an alarm only rarely.
So the budget (`alarms_per_day`) is checked by replaying exactly the agent's rule
(`decision.Decider`: raise at k anomalous of the last n scored windows, clear after
`clear_after` consecutive normal ones, the vote window emptied at clear) over the history the
agent recorded (`edge_agent.history`). An alarm is a transition to ALARM; a day is 86 400 s of
recorded windows (scored windows x hop), so gaps while the agent was off do not count as quiet
time.

What is replayed: scored windows only. Sensor-fault windows never enter the k-of-n history in
the agent either. Windows recorded while the agent was in alarm are kept by default (the
history is taken to be normal operation; a real failure in it would only make the threshold
more conservative); `exclude_alarm_periods=True` drops them, for a history that contains a
known real failure.

Search: candidates are the distinct recorded scores at or above the history's median (a
threshold that half of normal operation exceeds is not a threshold), since the replay changes
only where the threshold crosses a score. The alarm count is not strictly monotone in the
threshold (raising it can split one long alarm into two), so the search is a bisection for a
boundary (the chosen candidate meets the budget, the next lower one does not) followed by a
check of up to 64 evenly spaced candidates above it; one that breaks the budget restarts the
bisection above it. The result: the lowest candidate meeting the budget such that no checked
higher candidate breaks it. At the median candidate the budget may already be met: that is
the minimum and is returned as such.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .arrays import AnyFloatArray
from .errors import EdgeAgentError

DAY = 86400.0
MIN_WINDOWS = 50
MIN_SECONDS = 3600.0
_CHECKS = 64


class TuningError(EdgeAgentError):
    """The history cannot support a threshold (too short, nothing to replay, bad budget)."""


def replay_alarms(scores: AnyFloatArray, threshold: float, k: int, n: int,
                  clear_after: int) -> int:
    """Transitions to ALARM that the agent's k-of-n rule (decision.Decider) would have made
    over `scores` (scored windows, in order) at `threshold` (score > threshold = anomalous)."""
    above = np.asarray(scores) > threshold
    alarms = 0
    in_alarm = False
    votes: deque[bool] = deque(maxlen=n)
    count = 0  # anomalous votes in `votes`
    normal_run = 0
    for a in above.tolist():
        if len(votes) == n and votes[0]:
            count -= 1
        votes.append(a)
        count += a
        normal_run = 0 if a else normal_run + 1
        if not in_alarm and count >= k:
            in_alarm = True
            alarms += 1
        elif in_alarm and normal_run >= clear_after:
            in_alarm = False
            votes.clear()
            count = 0
    return alarms


@dataclass(frozen=True)
class Tuning:
    """The chosen threshold and what the replay says about it and the current one."""

    threshold: float
    alarms: int  # replayed alarms at `threshold`
    current_threshold: float
    current_alarms: int
    days: float  # recorded days (windows x hop / 86400)
    windows: int  # scored windows replayed
    at_minimum: bool  # the lowest candidate already met the budget

    @property
    def alarms_per_day(self) -> float:
        return self.alarms / self.days

    @property
    def current_alarms_per_day(self) -> float:
        return self.current_alarms / self.days


def tune_threshold(  # noqa: PLR0913 -- the rule's parameters, each one a keyword
    scores: AnyFloatArray, *, hop: float, k: int, n: int, clear_after: int,
    alarms_per_day: float, current_threshold: float, min_windows: int = MIN_WINDOWS,
    min_seconds: float = MIN_SECONDS,
) -> Tuning:
    """The lowest threshold whose replayed alarms per recorded day are at most
    `alarms_per_day` (module docstring: candidates, search, minimum)."""
    if not (math.isfinite(alarms_per_day) and alarms_per_day >= 0):
        raise TuningError(f"--false-alarms-per-day: expected a number >= 0, got {alarms_per_day}")
    s: NDArray[np.float64] = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    seconds = s.size * hop
    if s.size < min_windows or seconds < min_seconds:
        raise TuningError(
            f"history too short: {s.size} scored windows covering {seconds / 3600:.2f} h; need "
            f"at least {min_windows} windows and {min_seconds / 3600:g} h of normal operation")
    days = seconds / DAY
    budget = alarms_per_day * days
    cands = np.unique(s[s >= np.median(s)])

    def ok(i: int) -> bool:
        return replay_alarms(s, float(cands[i]), k, n, clear_after) <= budget

    top = cands.size - 1  # nothing is above the top candidate: no alarm, always ok
    lo: int | None = None if ok(0) else 0  # a candidate known to break the budget
    while True:
        found = 0
        if lo is not None:
            lo_b, found = lo, top
            while found - lo_b > 1:
                mid = (lo_b + found) // 2
                if ok(mid):
                    found = mid
                else:
                    lo_b = mid
        above = np.unique(np.linspace(found, cands.size - 1, _CHECKS).round().astype(int))
        bad = [int(i) for i in above if i > found and not ok(int(i))]
        if not bad:
            break
        lo = max(bad)
    thr = float(cands[found])
    return Tuning(
        threshold=thr, alarms=replay_alarms(s, thr, k, n, clear_after),
        current_threshold=current_threshold,
        current_alarms=replay_alarms(s, current_threshold, k, n, clear_after),
        days=days, windows=int(s.size), at_minimum=found == 0,
    )
