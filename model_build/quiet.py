"""Library noise off by default: a `model-build` command prints its own lines only.

TensorFlow announces oneDNN, CPU features and absl's logging state on import, and the TFLite
converter prints about a hundred lines per model (SavedModel loader, MLIR passes, the Keras
export signature). None of it helps someone training or evaluating a model, and it buries
the lines that do. Commands call `configure(verbose)` first; `verbose=True` (`--verbose`)
leaves every library as it is. `tensorflow()` imports TensorFlow and Keras with their
start-up lines captured, and `converter_output()` wraps a conversion; both write the captured
text back when something fails (`edge_agent.scoring.native_output`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from edge_agent.scoring.native_output import drop_everything, native_output

_state = {"verbose": True}


def configure(verbose: bool) -> None:
    """Before TensorFlow is imported: quiet (the default of every command) or as is."""
    _state["verbose"] = verbose
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ INFO and WARNING; errors stay
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def is_verbose() -> bool:
    return _state["verbose"]


def _captured() -> AbstractContextManager[None]:
    if is_verbose():
        return nullcontext()
    return native_output(keep=drop_everything, fds=(1, 2))


@contextmanager
def converter_output() -> Iterator[None]:
    """Around a TFLite conversion: its C++ and Keras lines captured unless verbose."""
    with _captured():
        yield


def tensorflow() -> None:
    """Import TensorFlow and Keras now, their start-up lines captured unless verbose (later
    imports are free: Python caches modules)."""
    with _captured():
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
