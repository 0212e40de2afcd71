"""The embedding network matches the paper's Tables 1 and 2 (built, not trained)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from edge_agent.scoring.frontend import DEFAULT_SPEC
from model_build.training.model import PAPER_MODEL, Inputs, ModelConfig, build_embedding_model


@pytest.fixture(scope="module")
def paper_model() -> keras.Model:
    return build_embedding_model(PAPER_MODEL, DEFAULT_SPEC)


def test_intermediate_shapes_follow_tables_1_and_2(paper_model: keras.Model) -> None:
    shapes = {
        "a_conv1": (156, 257, 16),
        "a_pool1": (77, 128, 16),
        "a_stage1": (77, 128, 16),
        "a_stage2": (39, 64, 32),
        "a_stage3": (20, 32, 64),
        "a_stage4": (10, 16, 128),
        "a_pool_time": (1, 16, 128),
        "a_flatten": (2048,),
        "emb_a": (128,),
        "b_conv1": (1250, 128),
        "b_conv2": (40, 128),
        "b_conv3": (10, 128),
        "b_flatten": (1280,),
        "emb_b": (128,),
        "embedding": (256,),
    }
    for name, shape in shapes.items():
        assert tuple(paper_model.get_layer(name).output.shape[1:]) == shape, name
    assert [i.name for i in paper_model.inputs] == ["spectrogram", "spectrum"]
    assert tuple(paper_model.inputs[0].shape[1:]) == (311, 513, 1)
    assert tuple(paper_model.inputs[1].shape[1:]) == (80_000, 1)


def test_parameter_count_about_2_5_million(paper_model: keras.Model) -> None:
    assert 2.3e6 < paper_model.count_params() < 2.7e6


def test_no_bias_terms_by_default(paper_model: keras.Model) -> None:
    names = [w.path for w in paper_model.weights]
    assert not [n for n in names if "bias" in n or "beta" in n]
    # and the only non-linearity is ReLU: no layer carries another activation
    for layer in paper_model.layers:
        act = getattr(layer, "activation", None)
        assert act is None or act.__name__ == "linear", layer.name


def test_bias_switch_adds_biases_and_l2_on_every_kernel() -> None:
    m = build_embedding_model(ModelConfig(width=0.25, bias=True), DEFAULT_SPEC)
    assert any("bias" in w.path for w in m.weights)
    kernels = [w for w in m.weights if w.path.endswith("kernel")]
    assert len(m.losses) == len(kernels) > 0  # one L2 penalty per kernel


@pytest.mark.parametrize(
    ("inputs", "names", "dim"),
    [
        ("spectrum", ["spectrum"], 128),
        ("spectrogram", ["spectrogram"], 128),
        ("logmel128", ["logmel128"], 128),
    ],
)
def test_input_ablations(inputs: Inputs, names: list[str], dim: int) -> None:
    cfg = ModelConfig(width=0.25, inputs=inputs)
    m = build_embedding_model(cfg, DEFAULT_SPEC)
    assert [i.name for i in m.inputs] == names == list(cfg.input_names)
    assert m.output.shape[-1] == dim == cfg.embedding_dim


def test_embeddings_added_while_training_table_4() -> None:
    """combine="add": one 128-d embedding, the sum of the two branches' (an Add layer)."""
    cfg = ModelConfig(width=0.25, combine="add")
    m = build_embedding_model(cfg, DEFAULT_SPEC)
    assert m.get_layer("embedding").__class__.__name__ == "Add"
    assert m.output.shape[-1] == 128 == cfg.embedding_dim
    a = m.get_layer("emb_a").output
    assert a.shape[-1] == 128
    with pytest.raises(ValueError, match=r"^combine: adds the two branches"):
        ModelConfig(inputs="spectrum", combine="add")
    assert cfg.featex and not cfg.uses_featex  # nothing to exchange in a sum
    with pytest.raises(ValueError, match=r"^combine: expected one of"):
        ModelConfig(combine="mean")  # type: ignore[arg-type]


def test_narrow_model_runs_and_keeps_256_d() -> None:
    m = build_embedding_model(ModelConfig(width=0.25), DEFAULT_SPEC)
    out = m([np.zeros((2, 311, 513, 1), np.float32), np.ones((2, 80_000, 1), np.float32)])
    assert out.shape == (2, 256)
    assert m.count_params() < 0.5e6


def test_config_validation_and_round_trip() -> None:
    with pytest.raises(ValueError, match=r"^inputs: expected one of"):
        ModelConfig(inputs="mfcc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^backend: expected cosine or gmm"):
        ModelConfig(backend="svm")  # type: ignore[arg-type]
    cfg = ModelConfig(width=0.5, trainable_centres=True, temporal_norm=False)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.frontend().temporal_norm is False
