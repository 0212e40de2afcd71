"""Shared pytest fixtures: fake microphones, brokers, tiny data sets, a trained run and its
bundle, and the real-data clips."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Fake microphones through the real PortAudio/ALSA stack: alsa_sandbox, pulse_server, fake_mic.
from audio_fixtures import alsa_sandbox, fake_mic, pulse_server  # noqa: F401

# A real small file system (size-limited tmpfs) for disk-full tests.
from disk_fixtures import small_disk  # noqa: F401

# Real mosquitto brokers (password, TLS, persistence) for the MQTT sink and agent tests.
from mqtt_fixtures import mqtt_broker, mqtt_certs  # noqa: F401

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


@pytest.fixture(autouse=True)
def _no_stray_score_history() -> Iterator[None]:
    """An agent run with the default outbox path keeps its score history
    (edge_agent.runtime.history) in the working directory: remove the files a test left there, so
    runs never seed each other's drift nor litter the checkout."""
    before = set(Path.cwd().glob("scores.*.bin"))
    yield
    for f in set(Path.cwd().glob("scores.*.bin")) - before:
        f.unlink(missing_ok=True)


"""Real recordings (DCASE, MIMII clips) kept next to the repository, not in it: `../shared`."""


@pytest.fixture(scope="session")
def real_data() -> Callable[[str], Path]:
    """`real_data("mimii-8ch")`: that folder of real clips (`real_data("")`: all of them), or
    skip the test when this clone has none (the clips are not redistributable, so most clones
    do not)."""

    def folder(name: str) -> Path:
        path = REAL_DATA / name
        if not path.is_dir():
            pytest.skip(f"real-data clips not present ({path})")
        return path

    return folder


# --- training (model_build.training.train): a tiny DCASE-layout set and one trained narrow run ---
def make_tiny_dcase_root(root: Path, n_train: int = 6, n_test: int = 4) -> Path:
    """Two machines x one section of 10 s tones + noise in the DCASE 2022 layout."""
    import numpy as np

    from edge_agent.audio.files import write_wav

    rng = np.random.default_rng(0)
    t = np.arange(160_000) / 16_000
    for m, (machine, f0) in enumerate((("fan", 440.0), ("valve", 1200.0))):
        for split, n in (("train", n_train), ("test", n_test)):
            folder = root / machine / split
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                domain = "target" if i == n - 1 else "source"
                label = "anomaly" if split == "test" and i % 2 else "normal"
                attr = f"a_{i % 2}"
                f = f0 * (1.5 if label == "anomaly" else 1.0) * (1 + 0.1 * (i % 2))
                x = 0.3 * np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal(t.size)
                name = f"section_0{m}_{domain}_{split}_{label}_{i:04d}_{attr}.wav"
                write_wav(folder / name, x, 16000)
    return root


@pytest.fixture(scope="session")
def tiny_dcase_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_dcase_root(tmp_path_factory.mktemp("tiny_dcase"))


@pytest.fixture(scope="session")
def trained_run(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A narrow (width 0.25) model trained 1 epoch on synth_root."""
    from model_build.training.model import ModelConfig
    from model_build.training.train import TrainConfig, train_run

    out = tmp_path_factory.mktemp("trained_run") / "run"
    train_run(
        [synth_root],
        out,
        ModelConfig(width=0.25),
        TrainConfig(epochs=1, batch_size=8, seed=0, verbose=False),
    )
    return out


@pytest.fixture(scope="session")
def trained_ensemble(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two narrow models (seeds 5 and 6) trained 1 epoch on synth_root: the one ensemble the
    training and export tests share (training is the suite's slowest step)."""
    from model_build.training.model import ModelConfig
    from model_build.training.train import TrainConfig, train_run

    out = tmp_path_factory.mktemp("trained_ensemble") / "run"
    train_run(
        [synth_root],
        out,
        ModelConfig(width=0.25),
        TrainConfig(epochs=1, batch_size=8, runs=2, seed=5, verbose=False),
    )
    return out


SLOW_TIMEOUT = 600
"""Seconds a `slow` test (it trains a network or runs a long pipeline) may take: CPU-starved
on a busy 2-core machine it runs several times slower than alone. Every other test has the
120 s of pyproject.toml, and a test that passes its limit fails alone (timeout_method
"signal"), the session goes on."""


@pytest.fixture(autouse=True)
def _signal_handlers_restored() -> Iterator[None]:
    """A command run in-process (`run`, `demo`) installs the agent's SIGTERM/SIGINT handlers in
    the pytest process; left there, a SIGTERM meant to stop a stuck suite would be taken for
    the agent's and ignored. Each test ends with the handlers it started with."""
    import signal

    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for s, handler in saved.items():
        if handler is not None:  # None: set outside Python, nothing to restore from here
            signal.signal(s, handler)


@pytest.fixture(autouse=True)
def _fresh_agent_logger() -> Iterator[None]:
    """Each test starts with the agent's logger as a fresh process has it: a command run
    in-process by an earlier test (`setup_logging`) must not leave its level and handler to
    the next one, whose captured output would then hold log lines it never asked for."""
    import logging

    yield
    logger = logging.getLogger("edge_agent")
    logger.handlers[:] = []
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


TRAINING_FIXTURES = frozenset({"trained_run", "trained_ensemble", "bundle_dir"})
"""Session fixtures that train (or export) a network: whichever test asks for one first pays
for it within its own time limit, so every test that uses one gets SLOW_TIMEOUT too (which
test runs first depends on the selection, e.g. `-k` or one file)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("timeout"):
            continue
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("slow") or fixtures & TRAINING_FIXTURES:
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT))


# --- export (model_build.export): the trained narrow run as a device bundle ---
@pytest.fixture(scope="session")
def bundle_dir(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`trained_run` exported in the default quantisation mode: BUNDLE/ (current = version 1)."""
    from model_build.export import DEFAULT_MODE, export_run

    out = tmp_path_factory.mktemp("bundle") / "bundle"
    export_run(trained_run, out, DEFAULT_MODE)
    return out


# --- synthetic data (model_build.synth): a tiny set for everyone's tests ---
@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fan + gearbox, sections 00 (operating point) and 01 (background): 16 source + 4 target
    training clips and 4 test clips per domain and label per section (144 clips, a few s)."""
    from model_build.synth.core import SynthConfig, generate

    root = tmp_path_factory.mktemp("synth")
    generate(
        SynthConfig(
            seed=0,
            machines=("fan", "gearbox"),
            sections=2,
            source_train=16,
            target_train=4,
            test_per_label=4,
        ),
        root,
    )
    return root


@pytest.fixture
def bundle_copy(bundle_dir: Path, tmp_path: Path) -> Path:
    """A private copy of `bundle_dir` for tests that add versions (calibrate, enrol)."""
    import shutil

    dst = tmp_path / "bundle"
    shutil.copytree(bundle_dir, dst)
    return dst


@pytest.fixture(scope="session")
def clips(bundle_dir: Path, synth_root: Path) -> tuple[Path, Path, float]:
    """(anomalous clip, normal clip, threshold between their scores)."""
    from edge_agent.audio.files import load_clip
    from edge_agent.runtime.scorer import Scorer

    scorer = Scorer.from_bundle(bundle_dir)

    test = sorted((synth_root / "fan" / "test").glob("section_00_*.wav"))
    scores = {p: scorer.score(load_clip(p, scorer.spec), "fan_section_00").score for p in test}
    anom = max((p for p in test if "_anomaly_" in p.name), key=scores.__getitem__)
    norm = min((p for p in test if "_normal_" in p.name), key=scores.__getitem__)
    assert scores[anom] > scores[norm], "test bundle separates no clip pair"
    return anom, norm, (scores[anom] + scores[norm]) / 2
