"""Threshold from a false-alarm budget: replay the k-of-n rule over the recorded normal scores.

"How often will it cry wolf?" is a question about the alarm DECISION, not about single windows:
with k-of-n voting, a threshold that 5 % of windows exceed may still raise an alarm only rarely.
So the budget (`alarms_per_day`) is checked by replaying exactly the agent's rule
(`decision.Decider`: raise at k anomalous of the last n scored windows, clear after
`clear_after` consecutive normal ones, the vote window emptied at clear) over the history the
agent recorded (`edge_agent.runtime.history`). An alarm is a transition to ALARM; a day is 86 400 s
of recorded windows (scored windows x hop), so gaps while the agent was off do not count as quiet
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

How sure the rate is: the replayed alarms over the recorded days are a count of rare events,
so each rate is shown with its exact (Garwood) 95 % Poisson range (`poisson_range`): 0 alarms
in 2.4 h is "0 per day, up to 37 per day", not "0 per day". A history shorter than a day
(`DAY_HOURS`) is tuned with a warning that says how many hours the rate rests on; below
`--min-hours` it is refused.

Which history is replayed (`replay_windows`, shared by `edge-agent tune` and the fleet's
remote tune): the scored windows in the order they were written (the file's order is the
order the agent scored them, whatever its clock said). Odd histories are refused or named:
- more than half of the replayed windows were anomalous when recorded (MOSTLY_ANOMALOUS):
  refused. That is not normal operation but a fault all along (or the wrong section or
  microphone), and the threshold tuned on it sits above the fault (a probe got 23x the old
  threshold); `allow_anomalous` (`--allow-anomalous-history`) is for the one case where the
  machine was healthy and the old threshold far too low;
- records with an implausible timestamp (`history.plausible`: 1e300, 1970) are left out,
  with a note: a damaged record or a clock that was not set;
- the clock going back (an NTP step, a clock set by hand) is a note; spans count forward
  time only, and "the last day" is the run of windows at the end of the file within a day
  of the last one (not every window whose timestamp falls in that day).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from edge_agent.arrays import AnyFloatArray
from edge_agent.errors import EdgeAgentError
from edge_agent.runtime.history import EPOCH_MAX, EPOCH_MIN, Records, plausible

DAY = 86400.0
MIN_WINDOWS = 50
MIN_SECONDS = 3600.0
MOSTLY_ANOMALOUS = 0.5
"""A history with more than this fraction of windows anomalous when recorded is refused."""
_CHECKS = 64
DAY_HOURS = 24.0
"""A per-day rate from less history than this is tuned with a warning naming the hours."""
CONFIDENCE = 0.95


def _poisson_cdf(k: int, lam: float) -> float:
    """P(X <= k) for X ~ Poisson(lam), summed in log space (k is a count of alarms)."""
    if lam <= 0.0:
        return 1.0
    log_lam = math.log(lam)
    return min(1.0, sum(math.exp(i * log_lam - lam - math.lgamma(i + 1)) for i in range(k + 1)))


def poisson_range(count: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact (Garwood) two-sided `confidence` range of a Poisson mean given `count`
    observed events: (0, 3.69) for 0 events at 95 %, (0.025, 5.57) for 1. Pure; bisection
    on the Poisson CDF (no scipy on the device)."""
    tail = (1.0 - confidence) / 2.0

    def solve(f: float, k: int) -> float:
        lo, hi = 0.0, max(10.0, 4.0 * (k + 1) + 10.0 * math.sqrt(k + 1))
        for _ in range(200):
            mid = (lo + hi) / 2.0
            # the CDF falls as lam grows: upper bound where P(X <= k) = tail, lower bound
            # where P(X >= count) = tail, i.e. P(X <= count - 1) = 1 - tail
            if _poisson_cdf(k, mid) > f:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2.0

    low = 0.0 if count == 0 else solve(1.0 - tail, count - 1)
    return low, solve(tail, count)


class TuningError(EdgeAgentError):
    """The history cannot support a threshold (too short, nothing to replay, bad budget)."""


@dataclass(frozen=True)
class ReplayWindows:
    """The windows of a score history that tune replays, in the order they were recorded."""

    scores: NDArray[np.float64]
    epochs: NDArray[np.float64]
    recorded: int  # records in the file
    anomalous: int  # replayed windows that were anomalous when recorded
    undated: int  # scored windows left out for an implausible timestamp
    span_hours: float  # the clock time they cover, forward steps only
    notes: tuple[str, ...]  # what is odd about the history but does not stop tuning

    def recent(self, seconds: float) -> NDArray[np.float64]:
        """The scores of the run of windows at the end within `seconds` of the last one."""
        if not self.epochs.size:
            return self.scores
        old = np.flatnonzero(self.epochs < self.epochs[-1] - seconds)
        return self.scores[old[-1] + 1 :] if old.size else self.scores


def replay_windows(
    recs: Records, exclude_alarms: bool = False, allow_anomalous: bool = False
) -> ReplayWindows:
    """The scored windows of `recs` to replay (not faults; not alarm periods with
    `exclude_alarms`; not records with an implausible timestamp), with notes on the timeline,
    or TuningError for a history that is mostly anomalous (module docstring)."""
    keep = ~recs.fault & np.isfinite(recs.score)
    if exclude_alarms:
        keep &= ~recs.in_alarm
    notes = []
    undated = np.flatnonzero(keep & ~plausible(recs.epoch))
    if undated.size:
        notes.append(
            f"{undated.size} record(s) with an implausible timestamp left out (record "
            f"{undated[0]}: {recs.epoch[undated[0]]:g}; expected a time between "
            f"{EPOCH_MIN:g} and {EPOCH_MAX:g} s since 1970): a damaged record or a clock that "
            "was not set"
        )
        keep[undated] = False
    scores, epochs = recs.score[keep], recs.epoch[keep]
    steps = np.diff(epochs)
    back = np.flatnonzero(steps < 0)
    if back.size:
        notes.append(
            f"the clock went back {back.size} time(s) during the history, by up to "
            f"{-steps.min() / 3600:.1f} h (after record {np.flatnonzero(keep)[back[0]]}): "
            "the replay follows the order the windows were recorded in"
        )
    anomalous = int(np.count_nonzero(recs.anomalous[keep]))
    if not allow_anomalous and anomalous > MOSTLY_ANOMALOUS * scores.size:
        raise TuningError(
            f"history: {anomalous} of {scores.size} windows ({anomalous / scores.size:.0%}) "
            "were anomalous when recorded: not normal operation (a fault all along, or the "
            "wrong section or microphone), and a threshold tuned on it would hide it; tune "
            "on a healthy period, or pass --allow-anomalous-history if the machine was "
            "healthy and the old threshold far too low"
        )
    return ReplayWindows(
        scores,
        epochs,
        len(recs),
        anomalous,
        int(undated.size),
        float(steps[steps > 0].sum()) / 3600.0,
        tuple(notes),
    )


def replay_alarms(scores: AnyFloatArray, threshold: float, k: int, n: int, clear_after: int) -> int:
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

    @property
    def hours(self) -> float:
        return self.days * 24.0

    def per_day_range(self, alarms: int) -> tuple[float, float]:
        """The 95 % range of the alarms per day that `alarms` replayed alarms over the
        recorded days support (`poisson_range`)."""
        lo, hi = poisson_range(alarms)
        return lo / self.days, hi / self.days

    def short_history(self) -> str | None:
        """A warning when the per-day rates rest on less than `DAY_HOURS` of history."""
        if self.hours >= DAY_HOURS:
            return None
        lo, hi = self.per_day_range(self.alarms)
        return (
            f"the per-day rates rest on {self.hours:.1f} h of history (less than "
            f"{DAY_HOURS:g} h): {self.alarms} replayed alarm(s) at the new threshold is "
            f"anything from {lo:.2f} to {hi:.2f} alarms/day (95 %); record longer before "
            "trusting the budget"
        )


def tune_threshold(  # noqa: PLR0913 -- the rule's parameters, each one a keyword
    scores: AnyFloatArray,
    *,
    hop: float,
    k: int,
    n: int,
    clear_after: int,
    alarms_per_day: float,
    current_threshold: float,
    min_windows: int = MIN_WINDOWS,
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
            f"at least {min_windows} windows and {min_seconds / 3600:g} h of normal operation"
        )
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
        threshold=thr,
        alarms=replay_alarms(s, thr, k, n, clear_after),
        current_threshold=current_threshold,
        current_alarms=replay_alarms(s, current_threshold, k, n, clear_after),
        days=days,
        windows=int(s.size),
        at_minimum=found == 0,
    )
