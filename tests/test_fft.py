"""edge_agent.scoring.fft: scipy's pocketfft loaded without `scipy.fft`, identical to
`scipy.fft.rfft`."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import scipy.fft
from numpy.typing import NDArray

from edge_agent.scoring import fft


@pytest.mark.parametrize("shape", [(160_000,), (311, 1024), (2, 311, 1024)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rfft_equals_scipy_bit_for_bit(
    shape: tuple[int, ...], dtype: type[np.floating[Any]]
) -> None:
    x: NDArray[np.floating[Any]] = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    got = fft.rfft(x, axis=-1)
    want = scipy.fft.rfft(x, axis=-1)
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_rfft_along_another_axis_and_of_integers() -> None:
    x = np.random.default_rng(1).integers(-100, 100, size=(64, 3))
    np.testing.assert_allclose(fft.rfft(x, axis=0), scipy.fft.rfft(x, axis=0), rtol=1e-12)


def test_frontend_loads_neither_scipy_fft_nor_scipy_special() -> None:
    """The memory point of the module: a scoring process must not import ~30 MB of scipy."""
    code = (
        "import sys, numpy as np\n"
        "from edge_agent.scoring import fft\n"
        "from edge_agent.scoring.frontend import DEFAULT_SPEC, model_inputs\n"
        "from edge_agent.runtime.scorer import Scorer\n"
        "model_inputs(np.zeros(160000, np.float32), ['spectrogram', 'spectrum'], DEFAULT_SPEC)\n"
        "print(fft.BACKEND, 'scipy.fft' in sys.modules, 'scipy.special' in sys.modules,"
        " 'scipy.signal' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["pypocketfft", "False", "False", "False"]
