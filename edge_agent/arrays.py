"""The array type names both packages use, defined once.

`FloatArray` is what the device computes and hands on: audio samples, features, embeddings and
scores, all float32 (the TFLite model's precision; float64 would double the memory of a 10 s
window for nothing). `AnyFloatArray` is what a function accepts when any float precision will
do, e.g. embeddings that the training side computed in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float32]
AnyFloatArray = NDArray[np.floating[Any]]
