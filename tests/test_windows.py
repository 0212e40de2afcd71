"""Windower: sample-exact windows from blocks of any size, timestamps and overflow flags."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from edge_agent.config.runtime import WindowSettings
from edge_agent.errors import ConfigError
from edge_agent.runtime.windows import Window, Windower
from edge_agent.scoring.frontend import DEFAULT_SPEC
from edge_agent.sources.base import Block

RATE = 16000
T0 = 1_700_000_000.0


def feed(
    windower: Windower, x: np.ndarray, sizes: np.ndarray, gaps: frozenset[int] = frozenset()
) -> list[Window]:
    """Push x in blocks of the given sizes; blocks starting at an index in `gaps` overflow."""
    out: list[Window] = []
    pos = 0
    for n in sizes:
        if pos >= x.size:
            break
        block = Block(x[pos : pos + n], T0 + pos / RATE, pos in gaps, f"b{pos}")
        out.extend(windower.push(block))
        pos += int(n)
    return out


@pytest.mark.parametrize("hop", [10.0, 5.0, 2.5, 12.5])
def test_windows_are_exact_slices_of_the_stream(hop: float) -> None:
    """A ramp cut into random blocks (1 sample .. 3 s): every window is the expected slice."""
    rng = np.random.default_rng(int(hop * 10))
    x = np.arange(61 * RATE, dtype=np.float32)  # exact in float32 up to 2**24
    sizes = rng.integers(1, 3 * RATE, 400)
    sizes[:50] = rng.integers(1, 5, 50)  # tiny blocks too
    w = Windower(10 * RATE, round(hop * RATE), RATE)
    windows = feed(w, x, sizes)
    length, step = 10 * RATE, round(hop * RATE)
    starts = list(range(0, x.size - length + 1, step))
    assert len(windows) == len(starts)
    for k, (win, s) in enumerate(zip(windows, starts, strict=True)):
        assert win.index == k
        assert win.samples.dtype == np.float32 and win.samples.shape == (length,)
        np.testing.assert_array_equal(win.samples, x[s : s + length])
        assert win.t_start == pytest.approx(T0 + s / RATE, abs=1e-6)
        assert not win.overflow
    assert w.windows == len(starts)


def test_windows_do_not_alias_the_buffer() -> None:
    w = Windower(RATE, RATE // 2, RATE)
    first = w.push(Block(np.ones(RATE, np.float32), T0))
    later = w.push(Block(np.full(3 * RATE, 2.0, np.float32), T0 + 1))
    assert len(first) == 1 and len(later) == 6
    assert np.all(first[0].samples == 1.0)  # not overwritten by later pushes
    np.testing.assert_array_equal(later[0].samples[: RATE // 2], np.ones(RATE // 2))


def test_overflow_flags_only_the_windows_containing_the_gap() -> None:
    x = np.arange(40 * RATE, dtype=np.float32)
    sizes = np.full(400, 1600)
    gap = 17 * RATE + 1600  # lost samples just before 17.1 s
    edge = 30 * RATE  # a gap exactly at a window's start is not inside that window
    w = Windower(10 * RATE, 5 * RATE, RATE)
    windows = feed(w, x, sizes, gaps=frozenset({gap, edge}))
    flagged = [round(win.t_start - T0) for win in windows if win.overflow]
    # [10, 20) and [15, 25) contain 17.1 s; [25, 35) contains 30 s, [30, 40) starts there
    assert flagged == [10, 15, 25]
    assert [round(win.t_start - T0) for win in windows] == [0, 5, 10, 15, 20, 25, 30]
    assert w.overflow_windows == 3


def test_timestamps_follow_each_block_after_a_jump() -> None:
    """After a reconnect the wall clock jumps: the window starting there uses the new anchor."""
    w = Windower(RATE, RATE, RATE)
    w.push(Block(np.zeros(RATE, np.float32), T0))
    out = w.push(Block(np.zeros(RATE, np.float32), T0 + 60.0, overflow=True, source_info="mic"))
    assert [round(win.t_start - T0, 6) for win in out] == [60.0]
    assert out[0].source_info == "mic" and not out[0].overflow


def test_empty_blocks_and_bad_settings() -> None:
    w = Windower(RATE, RATE, RATE)
    assert w.push(Block(np.zeros(0, np.float32), T0)) == []
    assert len(w.push(Block(np.zeros(RATE, np.float32), T0))) == 1
    with pytest.raises(ValueError, match="must be positive"):
        Windower(RATE, 0, RATE)


def test_window_length_follows_the_bundle_and_bad_settings_name_the_key() -> None:
    assert WindowSettings().samples(DEFAULT_SPEC) == (160000, 160000)
    assert WindowSettings(seconds=10.0, hop=5.0).samples(DEFAULT_SPEC) == (160000, 80000)
    one_second = replace(DEFAULT_SPEC, clip_seconds=1.0)
    assert WindowSettings(hop=0.5).samples(one_second) == (RATE, RATE // 2)
    with pytest.raises(ConfigError, match=r"^windows\.hop: expected a number in \[0\.1, 86400\]"):
        WindowSettings(hop=0.0)
    # one sample (1 GB RSS, windows dropped by the thousand) is under what a device can score
    with pytest.raises(ConfigError, match=r"^windows\.hop: .* got 6\.25e-05$"):
        WindowSettings(hop=1 / RATE)
    assert WindowSettings(hop=0.1).samples(DEFAULT_SPEC)[1] == RATE // 10  # the floor
    # below 5 Hz the floor rounds to no sample: still refused with the bundle
    slow = replace(DEFAULT_SPEC, sample_rate=4, n_fft=4, hop=2)
    with pytest.raises(ConfigError, match=r"^windows\.hop: 0\.1 s is less than one sample"):
        WindowSettings(hop=0.1).samples(slow)
    with pytest.raises(ConfigError, match=r"^windows\.seconds: the bundle's model takes 10 s"):
        WindowSettings(seconds=5.0).samples(DEFAULT_SPEC)
