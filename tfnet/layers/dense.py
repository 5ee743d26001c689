"""Fully connected layer with the course's initialisations and L2 cost (docs/methods.md §2, §3)."""

import keras

from tfnet.layers.kernel import L2Kernel


@keras.saving.register_keras_serializable(package="tfnet")
class Dense(L2Kernel, keras.layers.Layer):
    """`a = activation(x W + b)` with course initialisations and the `(λ/2m) ‖W‖_F²` L2 cost.

    `W` has shape `(n[l-1], n[l])` and is drawn by `initializer` (`kernel_initializer`, fan_in
    = n[l-1]); `b` starts at 0. With `l2 = λ > 0`, every call adds to `layer.losses`

        l2_cost = λ / (2 m) * sum(W**2),    m = batch size * R,

    whose gradient is `(λ / m) W`, R the replicas of the current replica context (`L2Kernel`
    states the rule under `tf.distribute`; `tfnet.training` instead calls `l2_cost` with the
    all-reduced global batch). The bias is not regularised (docs/methods.md §3).

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
        self._kernel_initializer = self._set_kernel_options(initializer, l2, seed)
        self.units = units
        self.use_bias = bool(use_bias)
        self.activation = keras.activations.get(activation)

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
        self._add_l2_cost(inputs)
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            **self._kernel_config(),
            "units": self.units,
            "use_bias": self.use_bias,
            "activation": keras.activations.serialize(self.activation),
        }
