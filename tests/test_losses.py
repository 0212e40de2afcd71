"""Sub-cluster AdaCos and mixup: the maths, checked against direct numpy computations."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from model_build.training.losses import (
    SubClusterAdaCos,
    adapted_scale,
    augment,
    cross_entropy,
    feature_exchange,
    initial_scale,
    mixup,
)


def _head(n_classes: int = 3, n_sub: int = 4, trainable: bool = False) -> SubClusterAdaCos:
    head = SubClusterAdaCos(n_classes, n_sub, trainable_centres=trainable, seed=1)
    head.build((None, 8))
    return head


def test_initial_scale_and_weights() -> None:
    head = _head(3, 4)
    assert math.isclose(float(head.scale), math.sqrt(2) * math.log(3 * 4 - 1), rel_tol=1e-6)
    assert initial_scale(342) == math.sqrt(2) * math.log(342 * 16 - 1)
    assert head.centres.shape == (8, 12)
    assert not head.centres.trainable and not head.scale.trainable
    assert head.trainable_weights == []
    assert len(_head(trainable=True).trainable_weights) == 1


def test_log_probs_are_summed_subcluster_softmax() -> None:
    head = _head(3, 4)
    x = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    got = np.exp(np.asarray(head(x)))
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    w = np.asarray(head.centres)
    wn = w / np.linalg.norm(w, axis=0, keepdims=True)
    logits = float(head.scale) * xn @ wn
    soft = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    want = soft.reshape(5, 3, 4).sum(axis=2)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)


def test_scale_adapts_like_adacos() -> None:
    rng = np.random.default_rng(0)
    cos = np.clip(rng.uniform(-0.3, 0.9, (6, 12)), -1, 1).astype(np.float32)
    labels = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    s = 5.0
    got = float(adapted_scale(tf.constant(cos), tf.constant(labels), tf.constant(s), 4))
    b_avg = np.mean(np.sum(np.exp(s * cos), axis=1))
    theta = np.arccos(cos).reshape(6, 3, 4).min(axis=2)
    med = np.median((labels * theta).sum(axis=1))
    want = math.log(b_avg) / math.cos(min(math.pi / 4, med))
    assert math.isclose(got, want, rel_tol=1e-4)
    assert not math.isclose(got, s, rel_tol=1e-2)  # it moved


def test_cross_entropy_soft_labels() -> None:
    labels = np.array([[0.25, 0.75]], np.float32)
    log_p = np.log(np.array([[0.5, 0.5]], np.float32))
    assert math.isclose(float(cross_entropy(labels, log_p)), math.log(2), rel_tol=1e-6)


def test_mixup_is_a_convex_pairing_of_waves_and_labels() -> None:
    rng = tf.random.Generator.from_seed(3)
    waves = np.arange(4, dtype=np.float32)[:, None] * np.ones((4, 10), np.float32)
    labels = np.eye(4, dtype=np.float32)
    mixed, mixed_labels = (np.asarray(t) for t in mixup(waves, labels, rng))
    # every row is lam * own + (1 - lam) * partner, labels alike with the same lam and partner
    np.testing.assert_allclose(mixed_labels.sum(axis=1), 1.0, rtol=1e-6)
    for i in range(4):
        lam = mixed_labels[i, i] if mixed_labels[i, i] > 0 else 0.0
        partner = [j for j in range(4) if j != i and mixed_labels[i, j] > 0]
        other = partner[0] if partner else i
        if other == i:
            lam = 1.0
        np.testing.assert_allclose(mixed[i], lam * i + (1 - lam) * other, rtol=1e-5, atol=1e-5)
    lams = np.asarray(rng.uniform((10_000,), 0.0, 1.0))
    assert 0.45 < lams.mean() < 0.55 and lams.min() < 0.01 and lams.max() > 0.99


def test_feature_exchange_swaps_branch_a_and_labels_three_blocks() -> None:
    """FeatEx: a kept clip keeps its class in block 1; an exchanged one carries branch A of its
    partner in the reversed batch and half of each class in blocks 2 and 3."""
    n, split, c = 6, 4, 3
    emb = tf.constant(np.arange(n * 8, dtype=np.float32).reshape(n, 8))
    labels = tf.one_hot([0, 1, 2, 0, 1, 2], c)
    rng = tf.random.Generator.from_seed(3)
    mixed, y = (np.asarray(t) for t in feature_exchange(emb, labels, split, rng, prob=0.5))
    e, lab = np.asarray(emb), np.asarray(labels)
    assert mixed.shape == (n, 8) and y.shape == (n, 3 * c)
    np.testing.assert_array_equal(mixed[:, split:], e[:, split:])  # branch B never moves
    np.testing.assert_allclose(y.sum(1), 1.0)
    kept = y[:, :c].sum(1) == 1.0
    assert 0 < kept.sum() < n  # both outcomes occur with this seed
    for i in range(n):
        if kept[i]:
            np.testing.assert_array_equal(mixed[i, :split], e[i, :split])
            np.testing.assert_array_equal(y[i, :c], lab[i])
        else:
            np.testing.assert_array_equal(mixed[i, :split], e[n - 1 - i, :split])
            np.testing.assert_allclose(y[i, c : 2 * c], 0.5 * lab[i])
            np.testing.assert_allclose(y[i, 2 * c :], 0.5 * lab[n - 1 - i])
    always = np.asarray(feature_exchange(emb, labels, split, rng, prob=1.0)[0])
    np.testing.assert_array_equal(always, e)


def test_augment_shifts_in_time_and_scales_within_the_gain_range() -> None:
    t = np.arange(1000, dtype=np.float32)
    waves = tf.constant(np.stack([np.sin(t / 7), np.cos(t / 11)]).astype(np.float32))
    out = np.asarray(augment(waves, tf.random.Generator.from_seed(0), gain_db=6.0))
    for x, y in zip(np.asarray(waves), out, strict=True):
        gain = np.linalg.norm(y) / np.linalg.norm(x)
        assert 10 ** (-6 / 20) - 1e-4 <= gain <= 10 ** (6 / 20) + 1e-4
        # a circular shift of the scaled wave: some roll matches exactly
        rolls = [np.abs(np.roll(x * gain, -k) - y).max() for k in range(len(x))]
        assert min(rolls) < 1e-4
