"""`edge-agent tune`: the replay of the k-of-n rule, the threshold search, the command end to end
on the shipped demo bundle with a history the real agent wrote, and rollback."""

from __future__ import annotations

import filecmp
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_agent.adaptation.tuning import (
    DAY,
    TuningError,
    replay_alarms,
    replay_windows,
    tune_threshold,
)
from edge_agent.agent import Agent
from edge_agent.bundle.layout import current_version, list_versions
from edge_agent.bundle.load import load_bundle
from edge_agent.commands.demo import load_demo
from edge_agent.config.load import load_config
from edge_agent.config.runtime import DecisionSettings
from edge_agent.events import ALARM
from edge_agent.runtime.decision import Decider
from edge_agent.runtime.history import ScoreHistory, history_path, read_history

REPO = Path(__file__).resolve().parents[1]


def decider_alarms(scores: np.ndarray, thr: float, k: int, n: int, clear: int) -> int:
    """The agent's own Decider over the same scores: what replay_alarms must reproduce."""
    d = Decider(DecisionSettings(k=k, n=n, clear_after=clear))
    raised = 0
    for s in scores:
        r = d.update(bool(s > thr))
        raised += r.changed and r.state == ALARM
    return raised


@pytest.mark.parametrize(("k", "n", "clear"), [(1, 1, 1), (3, 5, 3), (2, 4, 6), (5, 5, 1)])
def test_replay_matches_the_agents_decider(k: int, n: int, clear: int) -> None:
    rng = np.random.default_rng(k * 10 + n)
    for _ in range(5):
        scores = rng.normal(size=600) + np.repeat(rng.normal(size=20), 30)  # bursts
        for thr in (0.0, 1.0, 2.0):
            assert replay_alarms(scores, thr, k, n, clear) == decider_alarms(
                scores, thr, k, n, clear
            )


def candidates(scores: np.ndarray) -> np.ndarray:
    return np.unique(scores[scores >= np.median(scores)])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("budget", [0.0, 0.5, 3.0, 40.0])
def test_chosen_threshold_is_the_budget_boundary(seed: int, budget: float) -> None:
    rng = np.random.default_rng(seed)
    hop = 10.0
    scores = rng.gamma(2.0, size=2000) + np.repeat(rng.normal(0, 0.5, size=40), 50)
    k, n, clear = 3, 5, 3
    t = tune_threshold(
        scores, hop=hop, k=k, n=n, clear_after=clear, alarms_per_day=budget, current_threshold=1.0
    )
    days = scores.size * hop / DAY
    assert t.days == pytest.approx(days) and t.windows == scores.size
    assert replay_alarms(scores, t.threshold, k, n, clear) == t.alarms
    assert t.alarms / days <= budget
    c = candidates(scores)
    i = int(np.searchsorted(c, t.threshold))
    assert c[i] == t.threshold
    if t.at_minimum:
        assert i == 0
    else:  # the next lower threshold the history can tell apart breaks the budget
        assert replay_alarms(scores, float(c[i - 1]), k, n, clear) / days > budget
    assert t.current_alarms == replay_alarms(scores, 1.0, k, n, clear)


def test_generous_budget_stops_at_the_median() -> None:
    scores = np.linspace(0, 1, 500)  # a slow ramp: at most one long alarm at any threshold
    t = tune_threshold(
        scores, hop=10.0, k=1, n=1, clear_after=1, alarms_per_day=1000.0, current_threshold=0.9
    )
    assert t.at_minimum and t.threshold == pytest.approx(np.median(scores), abs=0.01)


def test_zero_budget_over_a_fault_gives_no_alarm() -> None:
    scores = np.r_[np.zeros(400), np.full(3, 5.0), np.zeros(400)]
    t = tune_threshold(
        scores, hop=10.0, k=3, n=5, clear_after=3, alarms_per_day=0.0, current_threshold=1.0
    )
    assert t.current_alarms == 1 and t.alarms == 0 and t.threshold == 5.0


def test_too_short_history_is_refused() -> None:
    with pytest.raises(TuningError, match="history too short: 49 scored windows"):
        tune_threshold(
            np.zeros(49),
            hop=3600.0,
            k=1,
            n=1,
            clear_after=1,
            alarms_per_day=1,
            current_threshold=1.0,
        )
    with pytest.raises(TuningError, match=r"covering 0\.50 h; need at least 50 windows and 1 h"):
        tune_threshold(
            np.zeros(180),
            hop=10.0,
            k=1,
            n=1,
            clear_after=1,
            alarms_per_day=1,
            current_threshold=1.0,
        )
    with pytest.raises(TuningError, match="--false-alarms-per-day"):
        tune_threshold(
            np.zeros(500),
            hop=10.0,
            k=1,
            n=1,
            clear_after=1,
            alarms_per_day=float("nan"),
            current_threshold=1.0,
        )


# --- odd histories: what is replayed, what is refused, what is named ---
T0 = 1_790_000_000.0  # 2026-09


def _history(
    path: Path, epochs: list[float], anomalous: list[bool] | None = None, threshold: float = 2.0
) -> Path:
    """A real history file written by the agent's own writer, scores N(0, 1) below the
    threshold unless `anomalous` says otherwise (then 5.0)."""
    rng = np.random.default_rng(1)
    h = ScoreHistory(path)
    for i, t in enumerate(epochs):
        bad = anomalous is not None and anomalous[i]
        h.append(t, 5.0 if bad else float(rng.normal()), threshold, anomalous=bad)
    h.close()
    return path


def test_replay_keeps_the_file_order_when_the_clock_goes_back(tmp_path: Path) -> None:
    """An NTP step back of 5.6 h in the middle: the windows are replayed in the order they
    were recorded, the span counts forward time only (not "over -5.6 h"), the note says
    what happened, and "the last hour" is the run of windows at the end of the file."""
    epochs = [T0 + 10 * i for i in range(400)] + [
        T0 + 4000 - 5.6 * 3600 + 10 * i for i in range(400)
    ]
    recs = read_history(_history(tmp_path / "s.bin", epochs))
    h = replay_windows(recs)
    assert h.scores.tolist() == recs.score.tolist()  # file order, nothing left out
    assert h.span_hours == pytest.approx(799 * 10 / 3600 - 10 / 3600)
    assert h.notes == (
        (
            "the clock went back 1 time(s) during the history, by up to 5.6 h "
            "(after record 399): the replay follows the order the windows were "
            "recorded in"
        ),
    )
    # the last hour: the 360 windows at the end, not also the 400 whose clock read later
    assert h.recent(3595).tolist() == recs.score[440:].tolist()


def test_replay_leaves_out_implausible_timestamps_and_compaction_survives_them(
    tmp_path: Path,
) -> None:
    """A record dated 1e300 (damaged) and ones from 1970 (a clock not yet set): left out of
    the replay with one note. Reopened by the agent, the file keeps its records: the last
    record, dated 1e300, is not taken for "now" (it made every other record 30 days too
    old: 1 of 503 records survived); the 1970 ones are dropped as old."""
    epochs = [10.0, 20.0] + [T0 + 10 * i for i in range(500)] + [1e300]
    path = _history(tmp_path / "s.bin", epochs)
    h = replay_windows(read_history(path))
    assert h.scores.size == 500 and h.undated == 3
    assert h.notes == (
        (
            "3 record(s) with an implausible timestamp left out (record 0: 10; "
            "expected a time between 1e+09 and 4.1e+09 s since 1970): a damaged "
            "record or a clock that was not set"
        ),
    )
    assert h.span_hours == pytest.approx(4990 / 3600)
    ScoreHistory(path).close()  # reopened: compaction at open
    assert read_history(path).epoch.tolist() == epochs[2:]


def test_a_mostly_anomalous_history_is_refused_unless_allowed(tmp_path: Path) -> None:
    """Every window anomalous (a fault all along): tuning on it proposed a threshold far
    above the fault; refused, naming the share. A quarter is tuned as usual."""
    n = 600
    path = _history(tmp_path / "all.bin", [T0 + 10 * i for i in range(n)], [True] * n)
    with pytest.raises(
        TuningError,
        match=r"^history: 600 of 600 windows \(100%\) were "
        r"anomalous when recorded: not normal operation",
    ):
        replay_windows(read_history(path))
    h = replay_windows(read_history(path), allow_anomalous=True)
    assert h.anomalous == n
    quarter = _history(
        tmp_path / "q.bin", [T0 + 10 * i for i in range(n)], [i % 4 == 0 for i in range(n)]
    )
    assert replay_windows(read_history(quarter)).anomalous == n // 4


def test_tune_command_on_odd_histories(tmp_path: Path) -> None:
    """The command on real history files: a clock going back and a 1e300 record are warning
    lines (stderr) and the summary shows a positive span; an all-anomalous one is refused
    with one line and nothing is written."""
    demo = load_demo()
    shutil.copytree(demo.bundle, tmp_path / "bundle")
    yml = tmp_path / "agent.yaml"
    yml.write_text(f"bundle: bundle\nsection: {demo.section}\noutbox: {{path: ob.sqlite}}\n")
    hist = tmp_path / f"scores.{demo.section}.bin"
    epochs = (
        [T0 + 10 * i for i in range(400)]
        + [1e300]
        + [T0 + 4000 - 5.6 * 3600 + 10 * i for i in range(400)]
    )
    _history(hist, epochs)
    odd = _tune("--config", str(yml), "--false-alarms-per-day", "1", "--dry-run")
    assert odd.returncode == 0, odd.stderr
    warnings = odd.stderr.splitlines()
    assert len(warnings) == 3 and all(w.startswith(f"warning: {hist}: ") for w in warnings)
    assert "the per-day rates rest on 2.2 h of history (less than 24 h)" in warnings[2]
    assert "1 record(s) with an implausible timestamp left out (record 400: 1e+300" in odd.stderr
    assert "the clock went back 1 time(s) during the history, by up to 5.6 h" in odd.stderr
    assert (
        f"history {hist}: 801 windows recorded over 2.2 h (1 left out: sensor faults, "
        "implausible timestamps); 800 scored windows"
    ) in odd.stdout
    hist.unlink()
    _history(hist, [T0 + 10 * i for i in range(600)], [True] * 600)
    refused = _tune("--config", str(yml), "--false-alarms-per-day", "1", "--yes")
    assert refused.returncode == 2 and refused.stdout == ""
    assert len(refused.stderr.splitlines()) == 1
    assert refused.stderr.startswith("error: history: 600 of 600 windows (100%) were anomalous")
    assert list_versions(tmp_path / "bundle") == [current_version(tmp_path / "bundle")]


# --- the command, end to end ---
def _agent_history(tmp: Path, repeats: int, faulty_again: int = 0) -> Path:
    """A copy of the demo bundle, a config beside it, and the score history that the REAL agent
    wrote while replaying the demo clips `repeats` times (one 10 s window per clip; with
    `faulty_again` each faulty clip that many times more per repeat: a machine faulty most of
    the time)."""
    demo = load_demo()
    shutil.copytree(demo.bundle, tmp / "bundle")
    yml = tmp / "agent.yaml"
    yml.write_text(
        f"bundle: bundle\nsection: {demo.section}\noutbox: {{path: state/ob.sqlite}}\n"
        "log: {stdout: false}\nevidence: {folder: state/evidence}\n"
    )
    faulty = [p for p, c in zip(demo.paths, demo.clips, strict=True) if c.label != "normal"]
    clips = [*demo.paths, *faulty * faulty_again]
    files = [str(p) for p in clips] * repeats
    cfg = load_config(yml, {"source.kind": "files", "source.files": files, "history.replays": True})
    assert Agent(cfg, sinks=[]).run(install_signals=False) == 0
    hist = history_path(cfg.history, cfg.outbox.path, demo.section)
    assert len(read_history(hist)) == len(files)
    return yml


def _faulty_again() -> int:
    """How many times more per repeat the hour of history replays each faulty demo clip: the
    fewest that make the machine anomalous most of the time (more windows above the threshold
    than below it), from the scores demo.json recorded when the demo was built."""
    demo = load_demo()
    thr = float(demo.info["test_split_scores"]["threshold"])
    above = [float(x) > thr for x in demo.info["scores"]]
    faulty = [a for a, c in zip(above, demo.clips, strict=True) if c.label != "normal"]
    assert 2 * sum(faulty) > len(faulty), "the premise: most faulty demo windows alarm"
    k = 0
    while 2 * (sum(above) + k * sum(faulty)) <= len(above) + k * len(faulty):
        k += 1
    return k


def _per_repeat() -> tuple[int, int]:
    """(windows, windows above the bundle threshold) of one repeat of the hour's clips, from
    the scores demo.json recorded through the device path when the demo was built."""
    demo = load_demo()
    thr = float(demo.info["test_split_scores"]["threshold"])
    above = [float(x) > thr for x in demo.info["scores"]]
    faulty = [a for a, c in zip(above, demo.clips, strict=True) if c.label != "normal"]
    k = _faulty_again()
    return len(above) + k * len(faulty), sum(above) + k * sum(faulty)


def _hour_counts() -> tuple[int, int]:
    """(windows above the threshold, windows) of the hour of history."""
    windows, above = _per_repeat()
    assert 2 * above > windows  # the premise: a machine anomalous most of the time
    repeats = 360 // windows
    return repeats * above, repeats * windows


@pytest.fixture(scope="module")
def hour_of_history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    n = 360 // _per_repeat()[0]  # 360 windows of 10 s = 1 h
    return _agent_history(tmp_path_factory.mktemp("tune"), n, faulty_again=_faulty_again())


def _tune(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "tune", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        input=stdin,
    )


def _files(vdir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(vdir.iterdir()) if p.is_file()}


def test_tune_writes_a_version_with_only_the_threshold_and_rolls_back(
    hour_of_history: Path,
) -> None:
    yml = hour_of_history
    root = yml.parent / "bundle"
    sec = load_demo().section
    before = load_bundle(root)
    before_files = _files(before.path)
    v0 = current_version(root)

    # the replayed clips are mostly faulty (with today's demo bundle 13 of 24 windows above
    # the threshold): not normal operation, refused unless asked for
    n_above, n_all = _hour_counts()
    refused = _tune("--config", str(yml), "--false-alarms-per-day", "0", "--dry-run")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        (
            f"error: history: {n_above} of {n_all} windows ({n_above / n_all:.0%}) were "
            "anomalous when recorded: not normal "
            "operation (a fault all along, or the wrong section or microphone), and a threshold "
            "tuned on it would hide it; tune on a healthy period, or pass "
            "--allow-anomalous-history if the machine was healthy and the old threshold far too "
            "low"
        )
    ]
    allow = "--allow-anomalous-history"
    dry = _tune("--config", str(yml), "--false-alarms-per-day", "0", "--dry-run", allow)
    assert dry.returncode == 0, dry.stderr
    assert f"{n_all} windows recorded" in dry.stdout and "dry run: nothing written" in dry.stdout
    assert "current threshold" in dry.stdout and "detection cost: last day " in dry.stdout
    # each rate with its 95 % range; an hour of history is less than a day: said, with hours
    assert re.search(
        r"current threshold [\d.]+: (\d+) alarms replayed = [\d.]+/day "
        r"\(95 %: [\d.]+-[\d.]+\)",
        dry.stdout,
    ), dry.stdout
    assert re.search(
        r"new threshold +[\d.]+: 0 alarms replayed = 0.00/day \(95 %: "
        r"0.00-88.53; budget 0/day\)",
        dry.stdout,
    ), dry.stdout  # 3.689 / (1/24)
    hist = history_path(load_config(yml).history, load_config(yml).outbox.path, sec)
    assert dry.stderr.splitlines() == [
        (
            f"warning: {hist}: the per-day rates rest on 1.0 h of history (less than 24 h): 0 "
            "replayed alarm(s) at the new threshold is anything from 0.00 to 88.53 alarms/day "
            "(95 %); record longer before trusting the budget"
        )
    ]
    # the detection cost on the alarms the agent kept audio of: every one is lost at budget 0
    kept = sorted(p.name for p in (yml.parent / "state" / "evidence").glob("*.flac"))
    assert kept
    assert (
        f"detection cost: {len(kept)} of {len(kept)} kept alarm clips of {sec} ("
    ) in dry.stdout and f": {kept[0]}" in dry.stdout
    assert current_version(root) == v0 and list_versions(root) == [v0]

    declined = _tune("--config", str(yml), "--false-alarms-per-day", "0", allow, stdin="n\n")
    assert declined.returncode == 1 and "nothing written" in declined.stdout
    assert list_versions(root) == [v0]

    done = _tune("--config", str(yml), "--false-alarms-per-day", "0", "--yes", allow)
    assert done.returncode == 0, done.stderr
    after = load_bundle(root)  # verified
    assert after.version > v0 and after.manifest["parent_version"] == v0
    rec = after.manifest["tuning"]
    assert rec["section"] == sec and rec["false_alarms_per_day"] == 0
    assert rec["allow_anomalous_history"] is True
    assert rec["replayed_alarms_new"] == 0 and rec["replayed_alarms_old"] > 0  # faulty clips
    new_thr = after.backend(sec).threshold
    assert new_thr == rec["new_threshold"] > before.backend(sec).threshold
    assert f"{new_thr:.5f}" in done.stdout
    # only that section's threshold changed
    for name, b in before.backends.items():
        a = after.backends[name]
        assert (a.threshold == b.threshold) == (name != sec)
        assert a.fusion == b.fusion and len(a.components) == len(b.components)
        for ca, cb in zip(a.components, b.components, strict=True):
            assert np.array_equal(ca.references, cb.references)
            assert np.array_equal(ca.density, cb.density)
    scores = read_history(
        history_path(load_config(yml).history, load_config(yml).outbox.path, sec)
    ).score
    assert replay_alarms(scores, new_thr, 3, 5, 3) == 0

    back = _tune("--config", str(yml), "--rollback")
    assert back.returncode == 0, back.stderr
    assert current_version(root) == v0
    restored = load_bundle(root)
    assert _files(restored.path) == before_files  # the exact bytes
    assert not filecmp.dircmp(restored.path, before.path).diff_files


def test_tune_refuses_a_short_history_and_an_override(tmp_path: Path) -> None:
    yml = _agent_history(tmp_path, 1)  # 12 windows = 2 minutes (6 of the demo's faulty)
    short = _tune(
        "--config", str(yml), "--false-alarms-per-day", "1", "--yes", "--allow-anomalous-history"
    )
    assert short.returncode == 2
    assert short.stderr.strip().splitlines() == [
        (
            "error: history too short: 12 scored windows covering 0.03 h; need at least 50 "
            "windows and 1 h of normal operation"
        )
    ]
    missing = _tune(
        "--config", str(yml), "--section", "no_such_section", "--false-alarms-per-day", "1"
    )
    assert missing.returncode == 2 and "no section 'no_such_section'" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    none = _tune("--config", str(yml))
    assert none.returncode == 2 and "--false-alarms-per-day: required" in none.stderr
    yml.write_text(yml.read_text() + "decision: {threshold: 3.0}\n")
    over = _tune("--config", str(yml), "--false-alarms-per-day", "1")
    assert over.returncode == 2 and "decision.threshold: 3.0" in over.stderr
    assert list_versions(tmp_path / "bundle") == [current_version(tmp_path / "bundle")]


def test_poisson_range_is_the_exact_garwood_interval() -> None:
    """The published exact 95 % Poisson ranges (Garwood 1936; e.g. 0 -> 0-3.689, 10 -> 4.795-
    18.39): a rate of 0 alarms in 2.4 h is not "0 per day"."""
    from edge_agent.adaptation.tuning import poisson_range

    for count, lo, hi in (
        (0, 0.0, 3.689),
        (1, 0.0253, 5.572),
        (2, 0.2422, 7.225),
        (10, 4.795, 18.39),
        (100, 81.36, 121.63),
    ):
        got = poisson_range(count)
        assert got == pytest.approx((lo, hi), rel=1e-3, abs=1e-4), count
