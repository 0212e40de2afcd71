"""Tiny data sets in exactly the layouts the DCASE challenge ships (2020 to 2024), for the
readers, the ground-truth checks, each year's scoring and the submission round trip.

Clips are short WAVs written here (a tone whose frequency says what the clip is, so a
spectral embedder can tell normal from anomalous); the ground truth is written the way the
official evaluators ship it: headerless two-column CSVs, `ground_truth_data/` (file,label)
and `ground_truth_domain/` (file,domain; 0 = source, 1 = target) with identical file names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent.audio.files import write_wav
from model_build.data.clip import Clip

RATE = 16_000
SECONDS = 1.0


def tone(freq: float, seed: int, seconds: float = SECONDS) -> np.ndarray:
    """A noisy tone: the frequency is the clip's identity, the noise makes clips differ."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.size)


def write_clip(path: Path, freq: float, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, tone(freq, seed), RATE)
    return path


@dataclass(frozen=True)
class EvalClip:
    """One anonymised evaluation test clip and its truth."""

    name: str  # section_XX_NNNN.wav
    anomaly: bool
    target: bool


def base_freq(machine: str) -> float:
    return 300.0 + 40.0 * (sum(map(ord, machine)) % 20)


def clip_freq(machine: str, anomaly: bool, target: bool, i: int) -> float:
    """Normal clips near the machine's tone (target shifted), anomalies from slightly to
    clearly off it: a detector can rank them, but not perfectly."""
    f = base_freq(machine) * (1.15 if target else 1.0) * (1.0 + 0.01 * (i % 5))
    return f * (1.01 + 0.03 * (i % 7)) if anomaly else f


def write_train(
    root: Path, machine: str, section: str, n_source: int = 8, n_target: int = 3, attrs: str = "a_1"
) -> None:
    """Normal training clips, named as every challenge since 2021 names them."""
    for i in range(n_source + n_target):
        target = i >= n_source
        dom = "target" if target else "source"
        tail = f"_{attrs}" if attrs else ""
        name = f"section_{section}_{dom}_train_normal_{i:04d}{tail}.wav"
        write_clip(root / machine / "train" / name, clip_freq(machine, False, target, i), seed=i)


def eval_clips(section: str, n: int = 12) -> list[EvalClip]:
    """n anonymous test clips cycling through (source, target) x (normal, anomaly)."""
    return [
        EvalClip(f"section_{section}_{i:04d}.wav", anomaly=bool(i % 2), target=bool(i // 2 % 2))
        for i in range(n)
    ]


def write_eval_test(root: Path, machine: str, clips: list[EvalClip]) -> None:
    for i, c in enumerate(clips):
        write_clip(
            root / machine / "test" / c.name,
            clip_freq(machine, c.anomaly, c.target, i),
            seed=1000 + i,
        )


def write_truth(truth_root: Path, machine: str, section: str, clips: list[EvalClip]) -> Path:
    """The DCASE 2022-2024 evaluator's ground truth for one section; returns the label file."""
    name = f"ground_truth_{machine}_section_{section}_test.csv"
    data = truth_root / "ground_truth_data" / name
    domain = truth_root / "ground_truth_domain" / name
    data.parent.mkdir(parents=True, exist_ok=True)
    domain.parent.mkdir(parents=True, exist_ok=True)
    data.write_text("".join(f"{c.name},{int(c.anomaly)}\n" for c in clips))
    domain.write_text("".join(f"{c.name},{int(c.target)}\n" for c in clips))
    return data


def official_eval_set(
    root: Path, machines: tuple[str, ...] = ("fan", "valve"), section: str = "03", n_test: int = 12
) -> dict[str, list[EvalClip]]:
    """An evaluation set as shipped: training clips, anonymous test clips, and the
    evaluator's ground-truth folders below `root/truth`. Returns each machine's test clips."""
    out = {}
    for m in machines:
        clips = eval_clips(section, n_test)
        write_train(root, m, section)
        write_eval_test(root, m, clips)
        write_truth(root / "truth", m, section, clips)
        out[m] = clips
    return out


# --- DCASE 2020: machine ids, one domain, eval labels in eval_data_list.csv ---------------
def write_2020(
    root: Path,
    machines: tuple[str, ...] = ("fan", "ToyCar"),
    ids: tuple[str, ...] = ("00", "02"),
    n_train: int = 8,
    n_test: int = 12,
    evaluation: bool = False,
) -> dict[str, list[tuple[str, bool]]]:
    """A 2020 set: `<machine>/train/normal_id_XX_NNNNNNNN.wav`; test clips named
    `{normal,anomaly}_id_XX_*.wav` (dev) or `id_XX_*.wav` (eval: labels only in
    `root/eval_data_list.csv`, written the way the challenge ships it). Returns per machine
    its test clips (name, anomalous)."""
    out: dict[str, list[tuple[str, bool]]] = {}
    for m in machines:
        out[m] = []
        for xx in ids:
            shift = 1.0 + 0.05 * int(xx)
            for i in range(n_train):
                write_clip(
                    root / m / "train" / f"normal_id_{xx}_{i:08d}.wav",
                    clip_freq(m, False, False, i) * shift,
                    seed=i,
                )
            for i in range(n_test):
                anomaly = bool(i % 2)
                label = "anomaly" if anomaly else "normal"
                name = f"id_{xx}_{i:08d}.wav" if evaluation else f"{label}_id_{xx}_{i:08d}.wav"
                write_clip(
                    root / m / "test" / name, clip_freq(m, anomaly, False, i) * shift, seed=2000 + i
                )
                out[m].append((name, anomaly))
    if evaluation:
        lines = []
        for m, clips in out.items():
            lines.append(m)
            lines += [f"{n},{'anomaly' if a else 'normal'}_{n},{int(a)}" for n, a in sorted(clips)]
        (root / "eval_data_list.csv").write_text("\n".join(lines) + "\n")
    return out


# --- DCASE 2021: sections and domains; test clips split by domain ------------------------
def write_2021(
    root: Path,
    machines: tuple[str, ...] = ("gearbox", "fan"),
    sections: tuple[str, ...] = ("00", "01"),
    n_test: int = 8,
    evaluation: bool = False,
) -> dict[str, list[tuple[str, str, str, bool]]]:
    """A 2021 set: training clips as every year since names them; dev test clips
    `<machine>/{source,target}_test/section_XX_<domain>_test_<label>_NNNN.wav`; eval test
    clips `section_XX_<domain>_test_NNNN.wav` with the 2021 evaluator's ground truth
    `root/truth/ground_truth_data/ground_truth_<machine>_section_XX_<domain>_test.csv`.
    Returns per machine its test clips (section, domain, name, anomalous)."""
    out: dict[str, list[tuple[str, str, str, bool]]] = {}
    for m in machines:
        out[m] = []
        for xx in sections:
            write_train(root, m, xx, attrs="")
            for dom in ("source", "target"):
                for i in range(n_test):
                    anomaly = bool(i % 2)
                    label = "anomaly" if anomaly else "normal"
                    name = (
                        f"section_{xx}_{dom}_test_{i:04d}.wav"
                        if evaluation
                        else f"section_{xx}_{dom}_test_{label}_{i:04d}.wav"
                    )
                    write_clip(
                        root / m / f"{dom}_test" / name,
                        clip_freq(m, anomaly, dom == "target", i),
                        seed=3000 + i,
                    )
                    out[m].append((xx, dom, name, anomaly))
                if evaluation:
                    gt = (
                        root
                        / "truth"
                        / "ground_truth_data"
                        / f"ground_truth_{m}_section_{xx}_{dom}_test.csv"
                    )
                    gt.parent.mkdir(parents=True, exist_ok=True)
                    gt.write_text(
                        "".join(f"{n},{int(a)}\n" for s, d, n, a in out[m] if s == xx and d == dom)
                    )
    return out


class BandEmbedder:
    """A real, fast clip embedder: log energy in 32 frequency bands of the whole file."""

    def embed_clips(self, clips: Sequence[Clip]) -> np.ndarray:
        from edge_agent.audio.files import read_wav

        out = []
        for c in clips:
            x, _ = read_wav(c.path)
            power = np.abs(np.fft.rfft(x)) ** 2
            out.append(np.log([b.sum() + 1e-9 for b in np.array_split(power, 32)]))
        return np.array(out)
