"""An alarm's spectrum against normal, as a small PNG (Home Assistant's alarm picture).

Why a picture: the explanation's sentence says what changed; an engineer who sees the alarm's
spectrum on the section's normal range believes it faster (and sees what the sentence left
out). The agent has no plotting library on the device (numpy only), so this draws the few
shapes it needs straight into an RGB array and writes the PNG with zlib:

* x: frequency, 0 Hz to Nyquist (one column per STFT bin, lines every kHz);
* y: level in dB relative to the window's total (`WindowSummary.shape_db`), 70 dB shown;
* grey: the normal range of the section's training audio (median +-2 spreads, per bin);
* dark grey: its median; red: the alarm window's spectrum; a pale blue column: the band the
  explanation names.

No text (no font on the device): the entity's attributes carry the words. ~5 ms, only on an
alarm raise.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge_agent.scoring.profile import AudioProfile

HEIGHT = 200
RANGE_DB = 70.0
BACKGROUND = (255, 255, 255)
GRID = (225, 225, 225)
NORMAL = (200, 200, 200)
MEDIAN = (110, 110, 110)
LIVE = (210, 30, 30)
BAND = (215, 230, 250)


def spectrum_png(
    shape_db: NDArray[Any], profile: AudioProfile, band_hz: tuple[float, float] | None = None
) -> bytes:
    """The PNG of one window's spectral shape (`WindowSummary.shape_db`) on the profile's
    normal range, the explanation's band shaded."""
    st = profile.stats["shape"]
    med = st.med.astype(np.float64)
    lo, hi = med - 2 * st.spread, med + 2 * st.spread
    live = np.asarray(shape_db, np.float64)
    top = float(max(np.max(hi), np.max(live))) + 3.0
    width = med.size
    img = np.empty((HEIGHT, width, 3), np.uint8)
    img[:] = BACKGROUND
    hz = profile.layout.hz_per_bin
    if band_hz is not None:
        a = max(0, int(band_hz[0] / hz))
        b = min(width, max(a + 1, int(np.ceil(band_hz[1] / hz)) + 1))
        img[:, a:b] = BAND
    for k in range(1, int(width * hz / 1000) + 1):  # a line every kHz
        img[:, min(width - 1, round(k * 1000 / hz))] = GRID

    def row(db: NDArray[np.float64]) -> NDArray[np.int64]:
        y = (top - db) / RANGE_DB * (HEIGHT - 1)
        return np.clip(np.round(y), 0, HEIGHT - 1).astype(np.int64)

    r_hi, r_lo = row(hi), row(lo)
    for x in range(width):
        img[r_hi[x] : r_lo[x] + 1, x] = NORMAL
    _line(img, row(med), MEDIAN)
    _line(img, row(live), LIVE)
    return encode_png(img)


def _line(img: NDArray[np.uint8], rows: NDArray[np.int64], color: tuple[int, int, int]) -> None:
    """A polyline through one row per column (vertical strokes join the steps)."""
    for x in range(rows.size):
        a = rows[x]
        b = rows[x - 1] if x else a
        img[min(a, b) : max(a, b) + 1, x] = color


def encode_png(rgb: NDArray[np.uint8]) -> bytes:
    """An 8-bit RGB PNG of `rgb` (height, width, 3): the stdlib's zlib, no imaging library."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))  # filter 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
