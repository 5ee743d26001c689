"""Fully connected layer with the course's initialisations and L2 cost (docs/methods.md §2, §3)."""

import keras
import tensorflow as tf

INITIALIZERS = ("he", "xavier", "zeros", "random_large")


def kernel_initializer(name, seed=None):
    """The Keras initializer that draws `W[l]` of shape `(n[l-1], n[l])` as docs/methods.md §2.

    - "he":           randn * sqrt(2 / n[l-1])  (VarianceScaling(2, "fan_in", untruncated normal))
    - "xavier":       randn * sqrt(1 / n[l-1])  (VarianceScaling(1, "fan_in", untruncated normal);
      Keras' GlorotNormal uses 2 / (n[l-1] + n[l]) and a truncated normal instead)
    - "zeros":        0 (never breaks symmetry: a demonstration)
    - "random_large": randn * 10 (saturates / explodes: a demonstration)
    """
    if name == "he":
        return keras.initializers.VarianceScaling(
            scale=2.0, mode="fan_in", distribution="untruncated_normal", seed=seed
        )
    if name == "xavier":
        return keras.initializers.VarianceScaling(
            scale=1.0, mode="fan_in", distribution="untruncated_normal", seed=seed
        )
    if name == "zeros":
        return keras.initializers.Zeros()
    if name == "random_large":
        return keras.initializers.RandomNormal(mean=0.0, stddev=10.0, seed=seed)
    raise ValueError(f"`initializer` must be one of {INITIALIZERS}. Received: initializer={name!r}")


@keras.saving.register_keras_serializable(package="tfnet")
class Dense(keras.layers.Layer):
    """`a = activation(x W + b)` with course initialisations and the `(λ/2m) ‖W‖_F²` L2 cost.

    `W` has shape `(n[l-1], n[l])` and is drawn by `initializer` (see `kernel_initializer`);
    `b` starts at 0. With `l2 = λ > 0`, every call adds to `layer.losses` (and so to the cost
    `model.fit` and `sum(model.losses)` see)

        l2_cost = λ / (2 m) * sum(W**2),    m = batch size * R,

    whose gradient is `(λ / m) W`, where R is the number of replicas of the current replica
    context (`tf.distribute.get_replica_context().num_replicas_in_sync`; 1 outside
    `strategy.run`, in cross-replica context inside `strategy.scope()` too). Under
    `tf.distribute` each replica sees its share of the global batch and Keras' trainer scales
    added losses by `1 / R` before the replica gradients are summed, so the total is
    `λ / (2 · global batch) ‖W‖²`, as on one device, when the global batch splits evenly (an
    uneven last batch gives each replica `m = R ×` its own share; `tfnet.training` instead calls
    `l2_cost` with the all-reduced global batch).
    The bias is not regularised (docs/methods.md §3).

    Differences from `keras.layers.Dense`: the initializer is named by the course's scheme;
    L2 is divided by the batch size `m` (Keras' `kernel_regularizer=L2(l)` adds `l ‖W‖²`,
    independent of `m`, so `l = λ / 2m` only at a fixed batch size); no constraints, LoRA or
    quantisation.

    Args:
        units: int > 0, n[l], the number of units.
        initializer: "he" (default), "xavier", "zeros" or "random_large".
        use_bias: bool, add `b` (default True; use False before `BatchNorm`, whose β replaces it).
        l2: float >= 0, λ (default 0.0: no L2 cost).
        activation: a Keras activation name or callable (default None: linear).
        seed: int or None, seed of the kernel initializer (default None).
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).
    """

    def __init__(
        self,
        units,
        initializer="he",
        use_bias=True,
        l2=0.0,
        activation=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
            raise ValueError(f"`units` must be a positive int. Received: units={units!r}")
        if not l2 >= 0.0:
            raise ValueError(f"`l2` must be >= 0. Received: l2={l2}")
        self._kernel_initializer = kernel_initializer(initializer, seed)
        self.units = units
        self.initializer = initializer
        self.use_bias = bool(use_bias)
        self.l2 = float(l2)
        self.activation = keras.activations.get(activation)
        self.seed = seed

    def build(self, input_shape):
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.units),
            name="kernel",
            initializer=self._kernel_initializer,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(shape=(self.units,), name="bias", initializer="zeros")
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: input_shape[-1]})

    def call(self, inputs):
        outputs = keras.ops.matmul(inputs, self.kernel)
        if self.use_bias:
            outputs = outputs + self.bias
        if self.l2 > 0.0:
            # The replica context, not the strategy: inside `strategy.scope()` but outside
            # `strategy.run` (cross-replica context: a gradient check, an evaluation) the whole
            # batch is here, although the strategy has R > 1 replicas.
            context = tf.distribute.get_replica_context()
            replicas = 1 if context is None else context.num_replicas_in_sync
            self.add_loss(self.l2_cost(tf.shape(inputs)[0] * replicas))
        return self.activation(outputs)

    def l2_cost(self, m):
        """`λ / (2 m) * sum(W**2)` for a cost averaged over `m` examples (a scalar, any dtype)."""
        kernel = self.kernel
        m = tf.cast(m, kernel.dtype)
        return self.l2 / (2.0 * m) * tf.reduce_sum(tf.square(kernel))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "initializer": self.initializer,
            "use_bias": self.use_bias,
            "l2": self.l2,
            "activation": keras.activations.serialize(self.activation),
            "seed": self.seed,
        }
