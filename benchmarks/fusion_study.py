"""How to weigh the components per section: fusion rules compared leave-one-family-out.

    nice .venv/bin/python benchmarks/fusion_study.py --out runs/quality --sizes 30,10

Reads what `benchmarks/quality.py` cached under --out (the default recipe's trained models and
embeddings per family, size and seed, the classical features) and adds the pseudo-anomalies'
embeddings (edge_agent.scoring.pseudo, cached too: the trained run is reloaded once per cell). Per
section and component it then computes, exactly as `edge_agent.backend.fit_section` does,
the standardised cross-fitted scores of the normal training clips and of the
pseudo-anomalies and the standardised scores of the test clips, so that any weighting rule
is scored in milliseconds instead of a retraining.

Each classical component also has its deviation score (`--deviation`, the backend's default;
0: the cosine scores alone, the system before it), a row of its own in its component's group,
as the backend fuses it. Rules: every single component (`model`, `bands`, `rhythm`, `dynamics`,
...; with its deviation score; `--classical` studies a subset), the fixed weights shipped before
issue 19 (`fixed`: every kind weighs 1), the hindsight `oracle` (per section the weighting with
the best TEST AUC: a ceiling, not a method), the per-section rule of edge_agent.scoring.fusion over
its parameters (`lda@<anchor>/<ridge>`) and the grid-search rule tried first (`grid@<shrink>`).

The test scores pass through the backend's `transform` before they are weighted and summed
(`--transform`; `none`: as they are, the table before the one-sided evidence), as the backend
fuses them; the rules decide on the standardised scores themselves, as the backend does.

Leave-one-family-out: for every family F, (anchor, ridge) is chosen on the OTHER families
(the pair whose system is, on average over their sizes and seeds, furthest above the best
single component of each cell) and reported on F, so the table shows what the choice would
have given on a family it never saw. Test labels are only used to score; the rule itself sees
normal training clips and their perturbed copies.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality as q
import study_tables as st

from edge_agent.scoring.classical import DEFAULT_CLASSICAL
from edge_agent.scoring.fusion import Transform
from edge_agent.scoring.pseudo import DEFAULT_COUNT

SHIPPED_RIDGE = 20.0
CLASSICAL = tuple(e["kind"] for e in DEFAULT_CLASSICAL)
"""The shipped classical components; `--classical` studies a subset (the table before the
dynamics component: `--classical bands,rhythm`)."""


def _cell_file(  # noqa: PLR0913 -- the plan's kinds keyword-only
    out: Path,
    fam: str,
    n: int,
    seed: int,
    count: int,
    system: str,
    classical: Sequence[str],
    deviation: int = 0,
    *,
    kinds: Sequence[str] | None = None,
) -> Path:
    recipe = q.SYSTEMS[system]
    assert recipe is not None
    tag = "" if tuple(classical) == ("bands", "rhythm") else "_" + "-".join(classical)
    tag += f"_dev{deviation}" if deviation else ""
    tag += "_" + "+".join(kinds) if kinds else ""  # a plan other than the product's
    # keyed by the backend's code too (as quality.py's cells): a change of how the backend
    # scores under the same settings recomputes instead of reading stale z-scores
    folder = out / "study" / recipe.training_key() / q.backend_code()
    return folder / f"{fam}_n{n}_s{seed}_p{count}{tag}.npz"


def row_kinds(classical: Sequence[str], deviation: int) -> tuple[str, ...]:
    """The kind of every score row of a cell: the model, the classical components' cosine
    scores, then (with `deviation`) the deviation scores of those the backend gives one
    (not `BackendConfig.no_deviation`'s), each in its component's group."""
    return ("model", *classical, *(_with_deviation(classical) if deviation else ()))


def _with_deviation(classical: Sequence[str]) -> tuple[str, ...]:
    from edge_agent.scoring.backend import BackendConfig

    return tuple(k for k in classical if k not in BackendConfig().no_deviation)


def section_scores(  # noqa: PLR0913 -- the plan's kinds keyword-only
    out: Path,
    fam: str,
    n: int,
    seed: int,
    count: int,
    system: str = "default",
    classical: Sequence[str] = CLASSICAL,
    deviation: int = 0,
    *,
    kinds: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Per section: z-scores (rows x clips: the model, then the `classical` kinds, then with
    `deviation` their deviation scores: `row_kinds`) of held-out normal clips,
    pseudo-anomalies (`count` copies drawn from `kinds`, default the product's plan) and test
    clips, cached. Follows backend.fit_section step by step."""
    from dataclasses import replace

    from edge_agent.scoring.backend import BackendConfig
    from model_build.data.dataset import scan
    from model_build.evaluation.evaluate import split_clips
    from model_build.evaluation.scores import section_rows

    f = _cell_file(out, fam, n, seed, count, system, classical, deviation, kinds=kinds)
    view = out / "views" / f"{fam}_n{n}"
    train, test = split_clips(scan([view]))
    if f.exists():
        z = np.load(f, allow_pickle=False)
        return {"train": train, "test": test, **{k: z[k] for k in z.files}}
    recipe = q.SYSTEMS[system]
    assert recipe is not None
    if not (out / "emb" / fam / f"n{n}" / recipe.training_key() / f"s{seed}.npz").exists():
        raise FileNotFoundError(f"{system}: no trained model cached for {fam} n={n} s{seed}")
    tr, te, _ = q.learned_embeddings(out, fam, n, seed, recipe, view, train, test)
    wanted = [i for i, e in enumerate(DEFAULT_CLASSICAL) if e["kind"] in classical]
    cls = [q.classical_embeddings(out, fam, [*train, *test], "classical")[i] for i in wanted]
    trs = [tr[0], *[c[: len(train)] for c in cls]]
    tes = [te[0], *[c[len(train) :] for c in cls]]
    pseudo = q.pseudo_features(out, fam, n, seed, recipe, train, count, kinds)
    config = replace(BackendConfig(), seed=seed, deviation=deviation)
    arrays: dict[str, Any] = {}
    test_idx = {s: np.flatnonzero([c.section_id == s for c in test]) for s in pseudo}
    for sec, (origins, lrn, pcls) in pseudo.items():
        src, tgt = section_rows(train, sec)
        pe = [lrn[0], *[pcls[i] for i in wanted]]
        foreign = _foreign_rows(train, sec, seed)
        rows: list[list[np.ndarray]] = []
        devs: list[list[np.ndarray]] = []
        for comp in range(len(trs)):
            z = component_z(
                trs[comp][src],
                trs[comp][tgt],
                pe[comp],
                origins,
                [tes[comp][test_idx[sec]], trs[comp][foreign]],
                config,
                comp > 0 and deviation > 0 and classical[comp - 1] in _with_deviation(classical),
            )
            rows.append(z[:4])
            devs += [z[4:]] if len(z) > 4 else []
        zn, zp, zt, zf = (list(r) for r in zip(*rows, *devs, strict=True))
        arrays[f"{sec}|normal"] = np.stack(zn)
        arrays[f"{sec}|foreign"] = np.stack(zf)
        arrays[f"{sec}|pseudo"] = np.stack(zp)
        arrays[f"{sec}|test"] = np.stack(zt)
        items = q.pseudo_plans(train, count, seed, kinds)[sec][1]
        arrays[f"{sec}|kinds"] = np.asarray([p.kind for p in items])
        arrays[f"{sec}|test_idx"] = test_idx[sec]
    f.parent.mkdir(parents=True, exist_ok=True)
    np.savez(f, **arrays)
    return {"train": train, "test": test, **arrays}


def component_z(
    source: np.ndarray,
    target: np.ndarray,
    pseudo: np.ndarray,
    origins: np.ndarray,
    others: Sequence[np.ndarray],
    config: Any,
    deviation: bool = False,
) -> list[np.ndarray]:
    """One component of one section, as backend.fit_section scores it: [held-out normal
    clips, pseudo-anomalies (each in the fold of its origin), *each of `others` scored by the
    full fit], all standardised by the held-out normal scores; with `deviation`, the same for
    its deviation score after them."""
    from dataclasses import replace

    from edge_agent.scoring.backend import _spread, cross_fit_with_extra, fit_component

    def fit_score(a: Any, b: Any, h: Any) -> Any:
        c = replace(fit_component(a, b, config), deviation=config.deviation)
        d = c.distances(h, config.variant)
        return np.stack([d, c.deviations(h)], axis=1) if deviation else d

    h, hx = cross_fit_with_extra(
        source, target, pseudo, origins, fit_score, config.folds, config.seed
    )
    full = replace(fit_component(source, target, config), deviation=config.deviation)
    out = []
    for j, score in enumerate(
        (lambda o: full.distances(o, config.variant), full.deviations)[: 1 + deviation]
    ):
        hj, hxj = (h[:, j], hx[:, j]) if deviation else (h, hx)
        mean, std = float(hj.mean()), _spread(hj)
        out += [(hj - mean) / std, (hxj - mean) / std, *[(score(o) - mean) / std for o in others]]
    return out


def _foreign_rows(train: Sequence[Any], sec: str, seed: int, per_group: int = 24) -> np.ndarray:
    """Normal training clips of OTHER sections: up to `per_group` of the same machine type and
    as many of other machine types (a deterministic draw per section)."""
    from edge_agent.scoring.pseudo import section_seed

    rng = np.random.default_rng(section_seed(sec, seed + 1))
    machine = sec.split("_section_", maxsplit=1)[0]
    same = [
        i
        for i, c in enumerate(train)
        if c.section_id != sec and c.machine == machine and c.label != "anomaly"
    ]
    other = [i for i, c in enumerate(train) if c.machine != machine and c.label != "anomaly"]
    pick = [rng.permutation(g)[:per_group] for g in (same, other) if g]
    return np.concatenate(pick).astype(np.intp) if pick else np.zeros(0, np.intp)


Rule = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(normal z (C, n), pseudo z (C, m)) -> weights (C,)."""


def ORACLE(zn: np.ndarray, zp: np.ndarray) -> np.ndarray:
    """Marker: hindsight, per section the candidate weighting with the best TEST AUC (not a
    method: the ceiling any rule over these candidates could reach)."""
    raise NotImplementedError


def expand(group_w: Sequence[float] | np.ndarray, rows: Sequence[str]) -> np.ndarray:
    """Row weights from group weights: a group's weight shared equally by its rows (the
    backend's rule: an ensemble's models, a component's cosine and deviation scores)."""
    from edge_agent.scoring.fusion import groups_of

    gw = dict(zip(groups_of(rows), group_w, strict=True))
    return np.asarray([gw[k] / rows.count(k) for k in rows])


def group_weights(row_w: np.ndarray, rows: Sequence[str]) -> np.ndarray:
    """The inverse of `expand`: each group's weight, the sum over its rows."""
    from edge_agent.scoring.fusion import groups_of

    return np.asarray(
        [sum(w for w, k in zip(row_w, rows, strict=True) if k == g) for g in groups_of(rows)]
    )


def row_aucs(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The Mann-Whitney AUC of every row of `scores` (rows x clips), positives `labels`
    (ties count half: average ranks), all rows at once."""
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=1)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    u = ranks[:, labels].sum(axis=1) - n_pos * (n_pos + 1) / 2
    out: np.ndarray = u / (n_pos * n_neg)
    return out


def _oracle(
    cell: dict[str, Any], sec: str, rows: Sequence[str], transform: Transform = "none"
) -> np.ndarray:
    import itertools

    from edge_agent.scoring.fusion import evidence, groups_of

    test = cell["test"]
    idx = cell[f"{sec}|test_idx"]
    lab = np.array([test[i].is_anomaly for i in idx])
    zt = evidence(cell[f"{sec}|test"], transform)
    n = len(groups_of(rows))
    cands = np.stack(
        [expand(w, rows) for w in itertools.product((0.0, 0.5, 1.0), repeat=n) if max(w) > 0]
    )
    best: np.ndarray = cands[int(np.argmax(row_aucs(cands @ zt, lab)))]
    return best


ANCHORS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)
RIDGES = (0.1, 0.5, 2.0, 5.0, 20.0)


def rules(rows: Sequence[str]) -> dict[str, Rule]:
    """Every rule compared over score rows of kinds `rows` (the model first; `row_kinds`):
    single components (a group's rows), fixed, the hindsight oracle, the shipped discriminant
    rule over its parameter grid (`lda@anchor/ridge`), and the grid-search rule tried first
    (`grid@shrink`, kept here as what did not help)."""
    from edge_agent.scoring.fusion import choose_weights, groups_of

    groups = groups_of(rows)
    eye = np.eye(len(groups))
    out: dict[str, Rule] = {k: _fixed_rule(expand(eye[i], rows)) for i, k in enumerate(groups)}
    out["fixed"] = _fixed_rule(expand(np.ones(len(groups)), rows))
    out["oracle"] = ORACLE
    for ridge in RIDGES:
        for anchor in ANCHORS:
            out[f"lda@{anchor:g}/{ridge:g}"] = _lda_rule(choose_weights, anchor, ridge, rows)
    for lam in (0.0, 0.01, 0.02, 0.05):
        out[f"grid@{lam:g}"] = _grid_rule(lam, rows)
    return out


def _fixed_rule(w: np.ndarray) -> Rule:
    return lambda zn, zp: w


def _lda_rule(choose: Any, anchor: float, ridge: float, kinds: Sequence[str]) -> Rule:
    def rule(zn: np.ndarray, zp: np.ndarray) -> np.ndarray:
        return np.asarray(choose(list(zn), list(zp), kinds, anchor, ridge).weights)

    return rule


def _grid_rule(lam: float, rows: Sequence[str]) -> Rule:
    """The first rule tried: each group of `rows` at 0, 1/2 or 1 (largest 1), the weighting
    with the best pseudo-anomaly AUC minus `lam` per unit of distance from the model alone."""
    import itertools

    from edge_agent.scoring.fusion import auc, groups_of

    n = len(groups_of(rows))
    alone: np.ndarray = np.eye(n)[0]
    cands: dict[tuple[float, ...], None] = {tuple(alone): None}
    for w in itertools.product((0.0, 0.5, 1.0), repeat=n):
        if max(w) > 0:
            cands[tuple(x / max(w) for x in w)] = None

    def rule(zn: np.ndarray, zp: np.ndarray) -> np.ndarray:
        best: np.ndarray = alone
        best_v = -1.0
        for w in cands:
            a = expand(w, rows)
            v = auc(a @ zn, a @ zp) - lam * float(np.abs(np.asarray(w) - alone).sum())
            if v > best_v + 1e-12:
                best, best_v = np.asarray(w), v
        return expand(best, rows)

    return rule


def score_rule(
    cell: dict[str, Any],
    rule: Rule,
    kinds_keep: set[str] | None = None,
    foreign: str = "off",
    rows: Sequence[str] = ("model", *CLASSICAL),
    transform: Transform = "none",
) -> dict[str, Any]:
    """The rule's test scores -> harmonic means (quality.summary) and per-section weights;
    the rule weighs the standardised scores, the test scores pass through `transform` first
    (`BackendConfig.transform`, as the backend fuses them)."""
    from edge_agent.scoring.fusion import evidence

    test = cell["test"]
    scores = np.full(len(test), np.nan)
    weights = {}
    for key in cell:
        if not key.endswith("|normal"):
            continue
        sec = key.split("|")[0]
        zn, zp = cell[f"{sec}|normal"], cell[f"{sec}|pseudo"]
        if kinds_keep is not None:
            keep = np.isin(cell[f"{sec}|kinds"], sorted(kinds_keep))
            zp = zp[:, keep]
        if foreign == "only":
            zp = cell[f"{sec}|foreign"]
        elif foreign == "add":
            zp = np.concatenate([zp, cell[f"{sec}|foreign"]], axis=1)
        w = _oracle(cell, sec, rows, transform) if rule is ORACLE else rule(zn, zp)
        weights[sec] = group_weights(w, rows)
        zt = evidence(cell[f"{sec}|test"], transform)
        scores[cell[f"{sec}|test_idx"]] = w @ zt
    res = q.summary(test, scores)
    res["weights"] = weights
    return res


def main(argv: list[str] | None = None) -> int:
    ap = st.parser(__doc__)
    ap.add_argument("--count", type=int, default=DEFAULT_COUNT, help="pseudo-anomalies per section")
    ap.add_argument(
        "--kinds",
        default=None,
        help="only these pseudo-anomaly kinds (comma-separated; default: all)",
    )
    ap.add_argument(
        "--foreign",
        choices=("off", "only", "add"),
        default="off",
        help="other sections' normal clips as pseudo-anomalies: not at all, instead "
        "of the perturbed copies, or in addition",
    )
    ap.add_argument(
        "--classical",
        default=",".join(CLASSICAL),
        help="the classical components studied beside the model (comma-separated)",
    )
    ap.add_argument(
        "--system",
        default="default",
        help="whose trained models (a benchmarks/quality.py system that trains)",
    )
    ap.add_argument(
        "--deviation",
        type=int,
        default=None,
        help="K of the classical components' deviation scores (default: the backend's; "
        "0: none, the cosine scores alone)",
    )
    ap.add_argument(
        "--transform",
        default=None,
        help="what the standardised test scores pass through before they are fused (default: "
        "the backend's; none: as they are, the system before 2026-12-05's ninth session)",
    )
    args = ap.parse_args(argv)
    from edge_agent.scoring.backend import BackendConfig
    from edge_agent.scoring.fusion import TRANSFORMS
    from model_build import quiet

    quiet.configure(verbose=False)
    fams, sizes, seeds = st.cells(args)
    keep = set(args.kinds.split(",")) if args.kinds else None
    classical = tuple(k for k in args.classical.split(",") if k)
    deviation = BackendConfig().deviation if args.deviation is None else args.deviation
    given = BackendConfig().transform if args.transform is None else args.transform
    if given not in TRANSFORMS:
        ap.error(f"--transform: expected one of {TRANSFORMS}, got {given!r}")
    transform = cast(Transform, given)
    kinds = ("model", *classical)
    rows = row_kinds(classical, deviation)
    rs = rules(rows)
    # results[rule][fam][n] = list over seeds of mixed AUC
    res: dict[str, dict[str, dict[int, list[float]]]] = {r: {} for r in rs}
    weights: dict[str, dict[str, list[np.ndarray]]] = {}
    for fam in fams:
        for n in sizes:
            for seed in seeds:
                try:
                    cell = section_scores(
                        args.out, fam, n, seed, args.count, args.system, classical, deviation
                    )
                except FileNotFoundError as exc:
                    print(f"skip {fam} n={n} s{seed}: {exc}", file=sys.stderr)
                    continue
                for name, rule in rs.items():
                    r = score_rule(cell, rule, keep, args.foreign, rows, transform)
                    res[name].setdefault(fam, {}).setdefault(n, []).append(100 * r["auc"]["mixed"])
                    if name.startswith("lda@") and name.endswith(f"/{SHIPPED_RIDGE:g}"):
                        weights.setdefault(name, {}).setdefault(fam, []).extend(
                            r["weights"].values()
                        )
    text = report(res, fams, sizes, weights, kinds)
    print(text)
    tag = "_n" + "-".join(map(str, sizes))
    tag += "" if args.system == "default" else f"_{args.system}"
    tag += "" if args.foreign == "off" else f"_foreign-{args.foreign}"
    tag += "" if not args.kinds else "_kinds-" + args.kinds.replace(",", "-")
    tag += "" if classical == CLASSICAL else "_classical-" + "-".join(classical)
    tag += "" if deviation == BackendConfig().deviation else f"_deviation{deviation}"
    tag += "" if transform == BackendConfig().transform else f"_transform-{transform}"
    (args.out / f"fusion_study{tag}.md").write_text(text + "\n")
    (args.out / f"fusion_study{tag}.json").write_text(
        json.dumps(
            {
                r: {f: {str(n): v for n, v in d.items()} for f, d in fam.items()}
                for r, fam in res.items()
            },
            indent=1,
        )
    )
    return 0


def _mean(res: dict[str, dict[int, list[float]]], fam: str, sizes: Sequence[int]) -> float:
    vals = [np.mean(res[fam][n]) for n in sizes if n in res.get(fam, {})]
    return float(np.mean(vals)) if vals else float("nan")


def lofo(
    res: dict[str, dict[str, dict[int, list[float]]]],
    fams: Sequence[str],
    sizes: Sequence[int],
    kinds: Sequence[str],
) -> dict[str, str]:
    """Per held-out family: the pseudo rule chosen on the others (largest mean margin over
    the best single component, per size and seed)."""
    cands = [r for r in res if r.startswith("lda@")]

    def margin(rule: str, fam: str) -> float:
        vals = []
        for n in sizes:
            if n not in res[rule].get(fam, {}):
                continue
            best = np.max([res[k][fam][n] for k in kinds], axis=0)
            vals.append(np.mean(np.asarray(res[rule][fam][n]) - best))
        return float(np.mean(vals)) if vals else float("nan")

    out = {}
    for held in fams:
        others = [f for f in fams if f != held and f in res[cands[0]]]
        out[held] = max(cands, key=lambda r: np.nanmean([margin(r, f) for f in others]))
    return out


def report(
    res: dict[str, dict[str, dict[int, list[float]]]],
    fams: Sequence[str],
    sizes: Sequence[int],
    weights: dict[str, dict[str, list[np.ndarray]]],
    kinds: Sequence[str],
) -> str:
    lines = []
    for n in sizes:
        lines += [
            f"\nmixed AUC (%), N = {n}, mean +- std over seeds",
            "",
            "| rule | " + " | ".join(fams) + " | mean | worst |",
            "|---|" + "---|" * (len(fams) + 2),
        ]
        for rule, per_fam in res.items():
            if rule.startswith("lda@") and not rule.endswith(f"/{SHIPPED_RIDGE:g}"):
                continue  # the other ridges: in the JSON and the LOFO choice, not the table
            cells, means = [], []
            for fam in fams:
                v = per_fam.get(fam, {}).get(n)
                if not v:
                    cells.append("-")
                    continue
                cells.append(f"{np.mean(v):.1f} +- {np.std(v):.1f}")
                means.append(np.mean(v))
            if means:
                lines.append(
                    f"| {rule} | "
                    + " | ".join(cells)
                    + f" | {np.mean(means):.1f} | {np.min(means):.1f} |"
                )
    chosen = lofo(res, fams, sizes, kinds)
    lines += [
        "",
        "leave-one-family-out: anchor and ridge chosen on the other families, "
        "reported on the held-out one (mixed AUC, mean over sizes "
        + ",".join(map(str, sizes))
        + ")",
        "",
        "| held-out family | chosen | system | "
        + " | ".join(kinds)
        + " | fixed | system - model | system - best single |",
        "|---|---|---|" + "---|" * len(kinds) + "---|---|---|",
    ]
    for fam in fams:
        if fam not in res["model"]:
            continue
        r = chosen[fam]
        sysv = _mean(res[r], fam, sizes)
        singles = {k: _mean(res[k], fam, sizes) for k in kinds}
        lines.append(
            f"| {fam} | {r} | {sysv:.1f} | "
            + " | ".join(f"{singles[k]:.1f}" for k in kinds)
            + f" | {_mean(res['fixed'], fam, sizes):.1f} | {sysv - singles['model']:+.1f} | "
            f"{sysv - max(singles.values()):+.1f} |"
        )
    lines += ["", "mean group weights (" + " / ".join(kinds) + ") per rule and family"]
    for rule, per in weights.items():
        row = [f"{f}: " + "/".join(f"{x:.2f}" for x in np.mean(per[f], axis=0)) for f in per]
        lines.append(f"- {rule}: " + "; ".join(row))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
