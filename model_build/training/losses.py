"""Sub-cluster AdaCos (Wilkinghoff, IJCNN 2021) and mixup, as used by the ICASSP 2023 paper.

Every auxiliary class owns `n_sub` (16) sub-cluster centres on the unit sphere. Class
probabilities are softmax probabilities over all C*16 scaled cosine logits, summed per class;
the loss is categorical cross-entropy against (mixup-)soft labels. The centres are drawn at
random once and by default NEVER trained (Table 3: fixed centres give the best result, they
cannot collapse onto the data). The scale s starts at sqrt(2)*log(C*16-1) and is re-estimated
from every training batch, as in AdaCos: s = log(B_avg) / cos(min(pi/4, theta_med)), where
B_avg is the mean over the batch of the summed exponentiated logits and theta_med the median
angle between a sample and the nearest centre of its (soft) class.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

N_SUBCLUSTERS = 16
_EPS = 1e-7


def initial_scale(n_classes: int, n_sub: int = N_SUBCLUSTERS) -> float:
    """AdaCos' fixed initial scale sqrt(2) * log(C*K - 1)."""
    return math.sqrt(2.0) * math.log(max(n_classes * n_sub - 1, 2))


class SubClusterAdaCos(keras.layers.Layer):  # type: ignore[misc]  # keras ships no types
    """Maps embeddings to class log-probabilities; holds the centres and the adaptive scale."""

    def __init__(
        self,
        n_classes: int,
        n_sub: int = N_SUBCLUSTERS,
        trainable_centres: bool = False,
        seed: int = 0,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.n_classes = n_classes
        self.n_sub = n_sub
        self.trainable_centres = trainable_centres
        self.seed = seed

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.centres = self.add_weight(
            name="centres",
            shape=(int(input_shape[-1] or 0), self.n_classes * self.n_sub),
            initializer=keras.initializers.GlorotUniform(seed=self.seed),
            trainable=self.trainable_centres,
        )
        self.scale = self.add_weight(
            name="scale",
            shape=(),
            initializer=keras.initializers.Constant(initial_scale(self.n_classes, self.n_sub)),
            trainable=False,
            aggregation="mean",  # several GPUs: each replica's estimate is averaged
        )

    def cosines(self, x: tf.Tensor) -> tf.Tensor:
        """(batch, C*K) cosine similarities between embeddings and all centres."""
        x = tf.math.l2_normalize(x, axis=-1)
        w = tf.math.l2_normalize(tf.convert_to_tensor(self.centres), axis=0)
        return tf.matmul(x, w)

    def log_probs(self, cos: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
        """(batch, C) log class probabilities: log of per-class summed sub-cluster softmax."""
        logits = scale * cos
        per_class = tf.reshape(logits, (-1, self.n_classes, self.n_sub))
        return tf.reduce_logsumexp(per_class, axis=-1) - tf.reduce_logsumexp(
            logits, axis=-1, keepdims=True
        )

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return self.log_probs(self.cosines(x), tf.convert_to_tensor(self.scale))


def adapted_scale(cos: tf.Tensor, labels: tf.Tensor, scale: tf.Tensor, n_sub: int) -> tf.Tensor:
    """AdaCos re-estimate of s from one batch (cos: (B, C*K), labels: soft (B, C))."""
    n_classes = tf.shape(labels)[-1]
    s_logits = scale * cos
    top = tf.reduce_max(s_logits)
    log_b_avg = top + tf.math.log(tf.reduce_mean(tf.reduce_sum(tf.exp(s_logits - top), axis=-1)))
    theta = tf.acos(tf.clip_by_value(cos, -1.0 + _EPS, 1.0 - _EPS))
    nearest = tf.reduce_min(tf.reshape(theta, (-1, n_classes, n_sub)), axis=-1)
    theta_class = tf.reduce_sum(labels * nearest, axis=-1)
    sorted_t = tf.sort(theta_class)
    n = tf.shape(sorted_t)[0]
    median = 0.5 * (sorted_t[(n - 1) // 2] + sorted_t[n // 2])
    return log_b_avg / tf.cos(tf.minimum(tf.constant(math.pi / 4), median)) + _EPS


def cross_entropy(labels: tf.Tensor, log_probs: tf.Tensor) -> tf.Tensor:
    """Mean categorical cross-entropy for soft labels."""
    return -tf.reduce_mean(tf.reduce_sum(labels * log_probs, axis=-1))


def mixup(
    waves: tf.Tensor, labels: tf.Tensor, rng: tf.random.Generator
) -> tuple[tf.Tensor, tf.Tensor]:
    """Mix every clip with a random partner of the batch, lambda ~ U[0, 1] per pair.

    Applied to raw waveforms (before both frontends) and one-hot labels alike, as in the
    reference implementation.
    """
    n = tf.shape(waves)[0]
    lam = rng.uniform((n, 1), 0.0, 1.0)
    perm = tf.argsort(rng.uniform((n,)))
    mixed = lam * waves + (1.0 - lam) * tf.gather(waves, perm)
    mixed_labels = lam * labels + (1.0 - lam) * tf.gather(labels, perm)
    return mixed, mixed_labels


def augment(waves: tf.Tensor, rng: tf.random.Generator, gain_db: float = 6.0) -> tf.Tensor:
    """Small-data augmentation that keeps a clip's class and its anomalies: a random circular
    time shift (a machine does not start where the recording does) and a random gain of up to
    +-`gain_db` (the level at the microphone varies with placement)."""
    n = tf.shape(waves)[0]
    length = tf.shape(waves)[1]
    shifts = tf.cast(rng.uniform((n,), 0.0, 1.0) * tf.cast(length, tf.float32), tf.int32)
    idx = (tf.range(length)[None, :] + shifts[:, None]) % length
    rolled = tf.gather(waves, idx, batch_dims=1)
    gain = tf.pow(10.0, rng.uniform((n, 1), -gain_db, gain_db) / 20.0)
    return rolled * gain


def feature_exchange(
    emb: tf.Tensor, labels: tf.Tensor, split: int, rng: tf.random.Generator, prob: float = 0.5
) -> tuple[tf.Tensor, tf.Tensor]:
    """FeatEx (Wilkinghoff, ICASSP 2024): the self-supervised task of exchanged branches.

    `emb` = concat(branch A, branch B) with branch A in the first `split` dimensions. With
    probability 1 - `prob` a clip's branch-A half is replaced by that of its partner in the
    reversed batch. Labels live in 3C classes: a clip left whole keeps its class in the first
    block; an exchanged one gets half of its own class in the second block and half of its
    partner's class in the third, so the network has to tell whole embeddings from exchanged
    ones and to know which part came from where. That asks the embedding to describe each clip
    beyond its attribute class, which the auxiliary task alone does not when classes are few
    or easy.
    """
    n = tf.shape(emb)[0]
    keep = tf.cast(rng.uniform((n, 1)) < prob, emb.dtype)
    a, b = emb[:, :split], emb[:, split:]
    a_rev = tf.reverse(a, axis=[0])
    y_rev = tf.reverse(labels, axis=[0])
    mixed = tf.concat([keep * a + (1.0 - keep) * a_rev, b], axis=-1)
    zeros = tf.zeros_like(labels)
    whole = tf.concat([labels, zeros, zeros], axis=-1)
    exchanged = tf.concat([zeros, 0.5 * labels, 0.5 * y_rev], axis=-1)
    return mixed, keep * whole + (1.0 - keep) * exchanged
