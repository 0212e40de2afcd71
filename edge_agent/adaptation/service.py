"""Adapting the device to its machines: calibrate, enrol, tune and teach as one service.

Why one service: the same changes are asked for from the command line (`edge-agent
calibrate | enrol | tune | feedback`), over the fleet (the remote `calibrate` and `tune`
commands) and by the operator's answers to alarms (`teach`: "not a fault" from Home Assistant
or `edge-agent feedback`, edge_agent.adaptation.feedback).
Each writes a new bundle version on the device from the verified current one, with the same
steps and the same record; written twice, the two drifted (a record field added on one side
only, a check forgotten on the other). Here they are written once. The commands and the fleet's
remote commands only parse their arguments, call these and print or reply.

Every change:
1. starts from the current version loaded with the agent's trust (`Trust.keys`: its release keys
   and this device's key), so a version the agent would refuse is never adapted;
2. computes the new section backend (`edge_agent.adaptation.sections` for calibrate, enrol and
   teach, `edge_agent.adaptation.tuning` for tune); a bundle that decides its component weights
   per section (`weighting: pseudo`) has calibrate and enrol decide them again from
   pseudo-anomalies of the new clips (`clips_pseudo`: the perturbed copies export makes of its
   training clips, embedded by the device path), so a new condition or machine gets the
   weighting its own sound supports;
3. writes it as a new version (`bundle.versions.write_adapted_version`: the same models, the
   record under the change's kind, `parent_version`, the signed origin carried and the version
   sealed with the device key `Trust.seal_key`), which becomes current; a running agent
   reloads it between two windows.
`rollback` undoes any of them, checked with the same trust first.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_agent.adaptation.sections import (
    Mode,
    ThresholdRule,
    calibrated_section,
    enrolled_section,
    taught_section,
)
from edge_agent.adaptation.tuning import ReplayWindows, Tuning, replay_windows, tune_threshold
from edge_agent.bundle.load import Bundle, load_bundle
from edge_agent.bundle.versions import AdaptationKind, rollback, write_adapted_version
from edge_agent.config.runtime import FeedbackRule, FeedbackSettings
from edge_agent.errors import BundleError
from edge_agent.runtime.history import read_history
from edge_agent.runtime.scorer import Scorer, stack_embeddings
from edge_agent.scoring.pseudo import section_pseudo

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edge_agent.arrays import FloatArray
    from edge_agent.bundle.signing import TrustedKey
    from edge_agent.scoring.backend import SectionBackend
    from edge_agent.scoring.pseudo import PseudoSet


@dataclass(frozen=True)
class Trust:
    """What a change is checked and sealed with: the agent's keys (release keys and this
    device's; empty: nothing is checked) and this device's sealing key (None without keys)."""

    keys: Sequence[TrustedKey] = ()
    seal_key: Ed25519PrivateKey | None = None


@dataclass(frozen=True)
class Change:
    """A version written on the device: which section, its threshold before and after, the
    version it was made from and the new version's folder."""

    kind: AdaptationKind
    section: str
    old_threshold: float | None  # None: a new section (enrolment)
    new_threshold: float
    version_from: int
    vdir: Path
    record: dict[str, Any]

    @property
    def version(self) -> int:
        return int(self.vdir.name)


def open_scorer(root: str | Path, trust: Trust, threads: int = 1) -> Scorer:
    """The current version's scorer, verified with `trust` (what calibrate and enrol embed
    their clips with, before the clips are collected: an unknown section or a refused version
    fails before minutes of recording)."""
    return Scorer.from_bundle(root, threads=threads, trusted=trust.keys)


Progress = Callable[[int, int], None]
"""Called after each clip is embedded with (clips done, clips in all): seconds of work on a Pi,
which a command shows and a remote command does not."""


def embed(
    scorer: Scorer, clips: Sequence[FloatArray], progress: Progress | None = None
) -> list[FloatArray]:
    """The device-path embeddings of `clips`: one (N, D_i) array per bundle component."""
    out = []
    for i, c in enumerate(clips, 1):
        out.append(scorer.embed(c))
        if progress is not None:
            progress(i, len(clips))
    return stack_embeddings(out, scorer.dims)


Note = Callable[[str], None]
"""Called with one line before a long step (embedding the pseudo-anomalies)."""


def clips_pseudo(
    scorer: Scorer, section: str, clips: Sequence[FloatArray], note: Note | None = None
) -> PseudoSet | None:
    """The pseudo-anomalies of the new clips (`scoring.pseudo.section_pseudo`, the copies
    export makes of its training clips), embedded through the device path, when the bundle
    decides component weights per section (`weighting: pseudo`) and has more than one kind of
    component; else None (the section keeps its weights, enrol uses the fixed ones)."""
    config = scorer.bundle.backend_config
    if config.weighting != "pseudo" or len(set(scorer.bundle.kinds)) < 2 or len(clips) < 2:
        return None
    if note is not None:
        note(
            f"embedding {config.pseudo_count} pseudo-anomalies (perturbed copies of the "
            "clips) to weigh the components"
        )
    return section_pseudo(
        section,
        len(clips),
        lambda i: clips[i],
        lambda waves: embed(scorer, list(waves)),
        scorer.spec.sample_rate,
        config,
    )


@dataclass(frozen=True)
class Calibration:
    """How a calibration uses its clips (`sections.calibrated_section`)."""

    mode: Mode = "replace"  # replace: the clips replace the target references; append: added
    percentile: float = 90.0  # the threshold: this percentile of held-out normal scores
    rule: ThresholdRule = "max"  # max: never below the old threshold; target: the new one only


def calibrate(
    scorer: Scorer,
    section: str,
    clips: Sequence[FloatArray],
    trust: Trust,
    how: Calibration = Calibration(),
    *,
    origin: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    note: Note | None = None,
) -> Change:
    """Calibrate `section` to a new condition from `clips` (normal windows of the bundle's
    clip length): their embeddings become its target references, the threshold is re-derived
    (`sections.calibrated_section`), the weights decided again (`clips_pseudo`). `origin`:
    where the clips came from, for the record."""
    old = scorer.bundle.backend(section)
    embs = embed(scorer, clips, progress)
    cal = calibrated_section(
        old,
        embs,
        scorer.bundle.backend_config,
        how.mode,
        how.percentile,
        how.rule,
        clips_pseudo(scorer, section, clips, note),
        scorer.bundle.kinds,
    )
    record = {
        "section": section,
        "mode": how.mode,
        "n_clips": len(clips),
        "percentile": how.percentile,
        **(origin or {}),
        **cal.record(),
    }
    return _write(
        scorer.bundle,
        section,
        cal.backend,
        "calibration",
        record,
        trust,
        cal.old_threshold,
        _profile(scorer, clips, "calibration"),
    )


def enrol(  # noqa: PLR0913 -- keyword-only: the clips' origin and two progress reports
    scorer: Scorer,
    section: str,
    clips: Sequence[FloatArray],
    trust: Trust,
    percentile: float = 90.0,
    replace: bool = False,
    *,
    origin: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    note: Note | None = None,
) -> Change:
    """Enrol a machine the model never saw as a new `section` from `clips` (its source
    references, a cross-fitted threshold and weights decided from its own clips,
    `sections.enrolled_section`, `clips_pseudo`); an existing section only with `replace`."""
    bundle = scorer.bundle
    replaced = section in bundle.backends
    if replaced and not replace:
        raise BundleError(
            f"{bundle.root}: section {section!r} already exists; pass --replace "
            "to refit it (or calibrate it with edge-agent calibrate)"
        )
    embs = embed(scorer, clips, progress)
    backend = enrolled_section(
        embs,
        bundle.backend_config,
        percentile,
        weights=bundle.weights,
        pseudo=clips_pseudo(scorer, section, clips, note),
        kinds=bundle.kinds,
    )
    record = {
        "section": section,
        "n_clips": len(clips),
        "percentile": percentile,
        "n_references": backend.components[0].n_source,
        "threshold": backend.threshold,
        "replaced": replaced,
        **(origin or {}),
    }
    return _write(
        bundle,
        section,
        backend,
        "enrolment",
        record,
        trust,
        bundle.backends[section].threshold if replaced else None,
        _profile(scorer, clips, "enrolment"),
    )


def _profile(scorer: Scorer, clips: Sequence[FloatArray], origin: str) -> dict[str, Any]:
    """The audio profile of a calibration's or enrolment's clips (they are the section's
    normal audio now): what the hearing check and the alarm explanations compare with."""
    from edge_agent.scoring.explain import profile_from_waves

    return profile_from_waves(clips, scorer.spec, origin).to_dict()


@dataclass(frozen=True)
class Teach:
    """How an answer "not a fault" changes its section (`sections.taught_section`)."""

    max_references: int = FeedbackSettings.max_references  # `feedback.max_references`
    rule: FeedbackRule = FeedbackSettings.threshold_rule  # `feedback.threshold_rule`


def teach(
    scorer: Scorer,
    section: str,
    windows: Sequence[FloatArray],
    trust: Trust,
    how: Teach = Teach(),
    *,
    origin: Mapping[str, Any] | None = None,
) -> Change:
    """Teach `section` that `windows` (an alarm's voting windows, each of the bundle's clip
    length) are normal: their embeddings join its target references (bounded, oldest first
    out), the section is refit and its threshold re-derived (`sections.taught_section`).
    `origin`: which alarm was answered, by whom, for the record."""
    old = scorer.bundle.backend(section)
    embs = embed(scorer, windows)
    t = taught_section(old, embs, scorer.bundle.backend_config, how.max_references, how.rule)
    record = {
        "section": section,
        "answer": "not_a_fault",
        "n_windows": len(windows),
        **(origin or {}),
        **t.record(),
    }
    return _write(scorer.bundle, section, t.backend, "feedback", record, trust, t.old_threshold)


@dataclass(frozen=True)
class DecisionRule:
    """The agent's alarm rule and hop a tuning replays (`decision:` and `windows.hop`)."""

    k: int
    n: int
    clear_after: int
    hop: float


@dataclass(frozen=True)
class TuneRequest:
    """What a tuning asks for: the section, the monitor's score history and the agent's rule
    over it, the budget (alarms per recorded day), and how the history is read."""

    section: str
    history: Path
    rule: DecisionRule
    budget: float
    exclude_alarms: bool = False  # leave out windows recorded while in alarm
    allow_anomalous: bool = False  # tune a history that was mostly anomalous when recorded
    min_windows: int = 50  # refuse a history with fewer scored windows
    min_hours: float = 1.0  # refuse a history covering less time


@dataclass(frozen=True)
class TunePlan:
    """What `tune` would do, before anything is written: the history as replayed, the tuning
    (current and new threshold with their replayed alarms) and the bundle it starts from."""

    request: TuneRequest
    bundle: Bundle
    history: ReplayWindows
    tuning: Tuning

    @property
    def section(self) -> str:
        return self.request.section

    @property
    def old_threshold(self) -> float:
        return self.bundle.backend(self.section).threshold

    @property
    def changes(self) -> bool:
        return self.tuning.threshold != self.old_threshold

    def recent_flags(self, seconds: float) -> tuple[int, int]:
        """(windows of the last `seconds` above the current threshold, how many of them are
        still above the new one): what the new threshold costs in detection."""
        recent = self.history.recent(seconds)
        above = recent[recent > self.old_threshold]
        return int(above.size), int(np.sum(above > self.tuning.threshold))


@dataclass(frozen=True)
class EvidenceCost:
    """The kept alarm clips of the tuned section and those the new threshold would not have
    raised (fewer than k of their voting windows above it)."""

    clips: int
    lost: tuple[str, ...]  # file names


def evidence_cost(
    folder: str | Path, section: str, monitor: str | None, k: int, threshold: float
) -> EvidenceCost:
    """What the new `threshold` costs on the alarms the agent kept audio of (`evidence.folder`):
    each clip's sidecar lists the scores of the windows that voted for its alarm; with fewer
    than `k` of them above `threshold` that alarm would not have been raised. These are the
    alarms someone may have looked at, so their loss is shown before anything is written."""
    from edge_agent.runtime.evidence import list_clips

    if not Path(folder).is_dir():
        return EvidenceCost(0, ())
    clips = [
        c
        for c in list_clips(folder)
        if c.meta.get("section") == section
        and (monitor is None or c.meta.get("monitor") in (None, monitor))
    ]
    lost = tuple(
        c.path.name
        for c in clips
        if sum(float(p.get("score", -math.inf)) > threshold for p in c.meta.get("parts", [])) < k
    )
    return EvidenceCost(len(clips), lost)


def plan_tune(root: str | Path, request: TuneRequest, trust: Trust) -> TunePlan:
    """Replay the agent's rule over the score history and pick the lowest threshold within the
    budget of alarms per recorded day (`tuning.tune_threshold`); nothing is written."""
    q, r = request, request.rule
    bundle = load_bundle(root, trusted=trust.keys)
    old = bundle.backend(q.section)
    h = replay_windows(read_history(q.history), q.exclude_alarms, q.allow_anomalous)
    t = tune_threshold(
        h.scores,
        hop=r.hop,
        k=r.k,
        n=r.n,
        clear_after=r.clear_after,
        alarms_per_day=q.budget,
        current_threshold=old.threshold,
        min_windows=q.min_windows,
        min_seconds=q.min_hours * 3600.0,
    )
    return TunePlan(request, bundle, h, t)


def write_tuning(
    plan: TunePlan, trust: Trust, origin: Mapping[str, Any] | None = None
) -> Change | None:
    """Write the planned threshold as a new version (None: it does not change)."""
    if not plan.changes:
        return None
    q, t, r = plan.request, plan.tuning, plan.request.rule
    old = plan.bundle.backend(q.section)
    record = {
        "section": q.section,
        "false_alarms_per_day": q.budget,
        "old_threshold": old.threshold,
        "new_threshold": t.threshold,
        "replayed_alarms_old": t.current_alarms,
        "replayed_alarms_new": t.alarms,
        "history_windows": t.windows,
        "history_days": round(t.days, 6),
        "k": r.k,
        "n": r.n,
        "clear_after": r.clear_after,
        "hop": r.hop,
        "exclude_alarm_periods": q.exclude_alarms,
        "allow_anomalous_history": q.allow_anomalous,
        **(origin or {}),
    }
    return _write(
        plan.bundle,
        q.section,
        dataclasses.replace(old, threshold=t.threshold),
        "tuning",
        record,
        trust,
        old.threshold,
    )


def undo(root: str | Path, trust: Trust) -> tuple[int, int]:
    """Roll back to the version the current one was made from (`bundle.versions.rollback`,
    the target checked with the agent's keys first); (from, to)."""
    return rollback(root, trust.keys)


def _write(
    bundle: Bundle,
    section: str,
    backend: SectionBackend,
    kind: AdaptationKind,
    record: dict[str, Any],
    trust: Trust,
    old_threshold: float | None,
    profile: dict[str, Any] | None = None,
) -> Change:
    backends = {**bundle.backends, section: backend}
    vdir = write_adapted_version(
        bundle,
        backends,
        kind,
        record,
        trust.seal_key,
        {section: profile} if profile is not None else None,
    )
    return Change(
        kind, section, old_threshold, float(backend.threshold), bundle.version, vdir, record
    )
