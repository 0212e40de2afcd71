"""The paper's dual-branch embedding network (Wilkinghoff, ICASSP 2023, Tables 1 and 2).

Branch A (spectrogram, 311x513x1): BN per frequency bin, Conv2D 16 7x7/2, BN, ReLU,
MaxPool 3/2, four stages of two pre-activation residual blocks (16/32/64/128 filters, stages
2-4 downsample), MaxPool (10,1), Flatten (2048), BN, Dense 128.
Branch B (spectrum, 80000x1): Conv1D 128 k256/s64, k64/s32, k16/s4 (each ReLU), Flatten
(1280), four x (Dense 128, BN, ReLU), Dense 128. Embedding = concat = 256-d; the Table 4
ablation "add embeddings while training" sums the two instead (`combine="add"`, 128-d). Its
"concatenate after training" needs no switch here: two runs, one per input, whose embeddings
`model_build.training.runs.ConcatenatedRuns` joins at evaluation.

"No bias terms" (Table 3): conv and dense layers have no bias, and BatchNormalization has no
learned offset beta either (center=False). A beta in front of a bias-free linear layer is a
bias (BN -> Dense gives Dense(beta) = a constant offset of the embedding), so dropping it is
what the paper's argument (no constant shortcut to a trivial solution) asks for. The
author's reference (wilkinghoff/icassp2023) keeps Keras' default BN (center=True) as far as
we know; `ModelConfig(bn_center=True)` restores that. The multiplicative gamma is kept.

The exportable embedding model takes FEATURES (inputs named `spectrogram` and `spectrum`)
because the TFLite export cannot compute a 160 000-point FFT; training wraps it with mixup
and the TensorFlow frontend (model_build.training.train).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Literal, get_args

from edge_agent.errors import FieldError
from edge_agent.scoring.frontend import DEFAULT_SPEC, FrontendSpec

if TYPE_CHECKING:  # keras loads TensorFlow: only inside the builders, so configs stay light
    import keras
    from keras import layers

Inputs = Literal["spectrogram", "spectrum", "logmel128", "both"]
INPUTS: tuple[Inputs, ...] = get_args(Inputs)
Combine = Literal["concat", "add"]
COMBINES: tuple[Combine, ...] = get_args(Combine)
Backend = Literal["cosine", "gmm"]
EMBEDDING_DIM_PER_BRANCH = 128
WEIGHT_DECAY = 1e-5


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and the paper's ablation switches (Tables 3-6; Table 7 combines them)."""

    # channel multiplier; 1.0 = the paper's network. 0.5 by default: as good on a plant's
    # amount of data (BENCHMARKS.md), 4x cheaper to train, and it leaves room on the device
    width: float = 0.5
    bias: bool = False  # Table 3: bias terms in conv/dense layers
    bn_center: bool = False  # BN offset beta (a bias too, see module docstring)
    trainable_centres: bool = False  # Table 3: train the sub-cluster centres
    n_subclusters: int = 16
    inputs: Inputs = "both"  # Table 4: spectrogram | spectrum | logmel128 | both
    combine: Combine = "concat"  # Table 4: the two branches' embeddings concatenated or added
    temporal_norm: bool = True  # Table 5 (a frontend switch, carried here)
    backend: Backend = "cosine"  # Table 6: cosine | gmm (evaluate's default --method)
    # FeatEx (Wilkinghoff, ICASSP 2024): an extra classification task on embeddings whose
    # branch-A half was exchanged with another clip's (training only). It exchanges one
    # branch's half of a concatenation, so the single-input and added-embedding ablations
    # (Table 4) train without it: see `uses_featex`, which run.json records.
    featex: bool = True

    def __post_init__(self) -> None:
        if self.inputs not in INPUTS:
            raise FieldError("inputs", f"expected one of {INPUTS}, got {self.inputs!r}")
        if self.backend not in ("cosine", "gmm"):
            raise FieldError("backend", f"expected cosine or gmm, got {self.backend!r}")
        if not 0.0 < self.width <= 4.0:
            raise FieldError("width", f"expected 0 < width <= 4, got {self.width}")
        if self.combine not in COMBINES:
            raise FieldError("combine", f"expected one of {COMBINES}, got {self.combine!r}")
        if self.combine == "add" and self.inputs != "both":
            raise FieldError("combine", "adds the two branches' embeddings, needs inputs 'both'")

    @property
    def branch_a_input(self) -> str | None:
        """Name of the 2-D input feeding branch A, or None when branch A is off."""
        return {"both": "spectrogram", "spectrogram": "spectrogram", "logmel128": "logmel128"}.get(
            self.inputs
        )

    @property
    def uses_featex(self) -> bool:
        """FeatEx trains only where there are two concatenated branches to exchange between."""
        return self.featex and self.inputs == "both" and self.combine == "concat"

    @property
    def uses_spectrum(self) -> bool:
        return self.inputs in ("both", "spectrum")

    @property
    def input_names(self) -> tuple[str, ...]:
        names = [n for n in (self.branch_a_input,) if n is not None]
        return (*names, "spectrum") if self.uses_spectrum else tuple(names)

    @property
    def embedding_dim(self) -> int:
        branches = 1 if self.combine == "add" else len(self.input_names)
        return EMBEDDING_DIM_PER_BRANCH * branches

    def frontend(self, base: FrontendSpec = DEFAULT_SPEC) -> FrontendSpec:
        return replace(base, temporal_norm=self.temporal_norm)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


PAPER_MODEL = ModelConfig(width=1.0, featex=False)
"""The paper's network as published (the defaults differ: see `ModelConfig`)."""


def _ch(n: int, cfg: ModelConfig) -> int:
    return max(1, round(n * cfg.width))


def _bn(cfg: ModelConfig, axis: int = -1, name: str | None = None) -> layers.Layer:
    from keras import layers

    return layers.BatchNormalization(axis=axis, center=cfg.bn_center or cfg.bias, name=name)


def _conv2d(
    filters: int, k: int, stride: int, cfg: ModelConfig, name: str | None = None
) -> layers.Layer:
    import keras
    from keras import layers

    return layers.Conv2D(
        filters,
        k,
        strides=stride,
        padding="same",
        name=name,
        use_bias=cfg.bias,
        kernel_regularizer=keras.regularizers.L2(WEIGHT_DECAY),
    )


def _dense(units: int, cfg: ModelConfig, name: str | None = None) -> layers.Layer:
    import keras
    from keras import layers

    return layers.Dense(
        units, use_bias=cfg.bias, kernel_regularizer=keras.regularizers.L2(WEIGHT_DECAY), name=name
    )


def _res_block(x: Any, filters: int, downsample: bool, cfg: ModelConfig) -> Any:
    """Pre-activation residual block: BN, ReLU, conv3x3, BN, ReLU, conv3x3 (+ shortcut)."""
    from keras import layers

    r = layers.ReLU()(_bn(cfg)(x))
    r = _conv2d(filters, 3, 2 if downsample else 1, cfg)(r)
    r = layers.ReLU()(_bn(cfg)(r))
    r = _conv2d(filters, 3, 1, cfg)(r)
    if downsample:
        x = layers.MaxPooling2D(2, padding="same")(x)
        x = _conv2d(filters, 1, 1, cfg)(x)
    elif x.shape[-1] != filters:
        x = _conv2d(filters, 1, 1, cfg)(x)
    return layers.Add()([x, r])


def branch_a(x: Any, cfg: ModelConfig) -> Any:
    """Table 1: ResNet on the (temporally normalised) spectrogram -> 128-d."""
    from keras import layers

    x = _bn(cfg, axis=-2, name="bn_frequency")(x)  # the paper's "BN (temporal axis)"
    x = _conv2d(_ch(16, cfg), 7, 2, cfg, name="a_conv1")(x)
    x = layers.ReLU()(_bn(cfg)(x))
    x = layers.MaxPooling2D(3, strides=2, name="a_pool1")(x)
    for stage, filters in enumerate((16, 32, 64, 128)):
        x = _res_block(x, _ch(filters, cfg), stage > 0, cfg)
        x = _res_block(x, _ch(filters, cfg), False, cfg)
        x = layers.Identity(name=f"a_stage{stage + 1}")(x)
    x = layers.MaxPooling2D((10, 1), padding="same", name="a_pool_time")(x)
    x = layers.Flatten(name="a_flatten")(x)
    x = _bn(cfg)(x)
    return _dense(EMBEDDING_DIM_PER_BRANCH, cfg, name="emb_a")(x)


def branch_b(x: Any, cfg: ModelConfig) -> Any:
    """Table 2: 1-D CNN + MLP on the full-clip magnitude spectrum -> 128-d."""
    import keras
    from keras import layers

    for i, (k, s) in enumerate(((256, 64), (64, 32), (16, 4))):
        x = layers.Conv1D(
            _ch(128, cfg),
            k,
            strides=s,
            padding="same",
            use_bias=cfg.bias,
            kernel_regularizer=keras.regularizers.L2(WEIGHT_DECAY),
        )(x)
        x = layers.ReLU(name=f"b_conv{i + 1}")(x)
    x = layers.Flatten(name="b_flatten")(x)
    for _ in range(4):
        x = layers.ReLU()(_bn(cfg)(_dense(_ch(128, cfg), cfg)(x)))
    return _dense(EMBEDDING_DIM_PER_BRANCH, cfg, name="emb_b")(x)


def input_shapes(cfg: ModelConfig, spec: FrontendSpec) -> dict[str, tuple[int, ...]]:
    """Feature shapes (without batch) per input name."""
    from model_build.training.tf_frontend import LOGMEL_BINS

    shapes = {
        "spectrogram": (spec.n_frames, spec.n_bins, 1),
        "logmel128": (spec.n_frames, LOGMEL_BINS, 1),
        "spectrum": (spec.spectrum_bins, 1),
    }
    return {n: shapes[n] for n in cfg.input_names}


def build_embedding_model(cfg: ModelConfig, spec: FrontendSpec) -> keras.Model:
    """Features -> embedding (256-d for `inputs='both'`). Inputs are named by feature."""
    import keras
    from keras import layers

    shapes = input_shapes(cfg, spec)
    ins = {n: keras.Input(shape=s, name=n) for n, s in shapes.items()}
    parts = []
    if cfg.branch_a_input is not None:
        parts.append(branch_a(ins[cfg.branch_a_input], cfg))
    if cfg.uses_spectrum:
        parts.append(branch_b(ins["spectrum"], cfg))
    if len(parts) == 1:
        out = parts[0]
    elif cfg.combine == "add":
        out = layers.Add(name="embedding")(parts)
    else:
        out = layers.Concatenate(name="embedding")(parts)
    return keras.Model(inputs=[ins[n] for n in cfg.input_names], outputs=out, name="embedding")
