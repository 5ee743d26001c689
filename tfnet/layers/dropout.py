"""Inverted dropout (docs/methods.md §3)."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfnet")
class InvertedDropout(keras.layers.Layer):
    """Inverted dropout: `d = uniform(shape(a)) < keep_prob`, `a * d / keep_prob` in training.

    Each unit is kept with probability `keep_prob` and the kept ones are divided by it, so the
    expected activation is unchanged and nothing is rescaled at test time: in inference
    (`training=False` or `None`) the layer is the identity. A fresh mask is drawn at every
    training call (a stateless Philox draw keyed by the next state of the layer's
    `keras.random.SeedGenerator`), so runs with the same `seed` draw the same masks.

    Differences from `keras.layers.Dropout(rate)`: parameterised by `keep_prob = 1 - rate` as in
    the course; the mask is `uniform < keep_prob` drawn from its own seed stream (Keras draws a
    Bernoulli mask), so the two give the same distribution but not the same masks; no
    `noise_shape`.

    Args:
        keep_prob: float in (0, 1], the probability of keeping a unit (1.0: no dropout).
        seed: int or None, seed of the mask stream (default None).
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).
    """

    def __init__(self, keep_prob, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < keep_prob <= 1.0:
            raise ValueError(f"`keep_prob` must be in (0, 1]. Received: keep_prob={keep_prob}")
        self.keep_prob = float(keep_prob)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, inputs, training=None):
        if not training or self.keep_prob == 1.0:
            return inputs
        # The uniform draw in float32 at least: float16 has too few values below 1 for an
        # accurate keep_prob.
        uniform_dtype = keras.backend.result_type(inputs.dtype, "float32")
        # Philox, named: keras.random.uniform's default algorithm is ~20x slower in an XLA loop.
        d = tf.random.stateless_uniform(tf.shape(inputs), seed=self.seed_generator.next(),
                                        dtype=uniform_dtype, alg="philox")
        d = tf.cast(d < self.keep_prob, inputs.dtype)
        return inputs * d / tf.constant(self.keep_prob, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "keep_prob": self.keep_prob, "seed": self.seed}
