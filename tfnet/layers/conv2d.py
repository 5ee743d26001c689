"""2-D convolution with the course's initialisations and L2 cost (docs/methods.md §2, §3)."""

import keras

from tfnet.layers.kernel import L2Kernel


@keras.saving.register_keras_serializable(package="tfnet")
class Conv2D(L2Kernel, keras.layers.Conv2D):
    """`a = activation(conv2d(x, K) + b)`: Keras' convolution, the course's kernel and L2 cost.

    Keras' `Conv2D` (strides, padding, dilation, groups, data format, serialisation) with its
    kernel `K`, of shape `(kh, kw, c_in / groups, filters)`, drawn by `initializer`
    (`kernel_initializer`), fan_in = kh·kw·c_in / groups the inputs of one output value:
    "he" is `randn * sqrt(2 / fan_in)`, untruncated. `b` starts at 0. With `l2 = λ > 0` every
    call adds to `layer.losses`

        l2_cost = λ / (2 m) * sum(K**2),    m = batch size * R,

    whose gradient is `(λ / m) K`, as `Dense` does (`L2Kernel` states the rule for R, the
    replicas of the current replica context); the bias is not regularised.

    Differences from `keras.layers.Conv2D`: `initializer`, `l2` and `seed` replace
    `kernel_initializer` and `kernel_regularizer` (Keras' `L2(l)` adds `l ‖K‖²`, independent of
    `m`); Keras' default initializer is Glorot uniform, ours He normal.

    Args:
        filters: int > 0, the number of output channels.
        kernel_size: int or (kh, kw), the window.
        initializer: "he" (default), "xavier", "zeros" or "random_large".
        use_bias: bool, add `b` (default True; use False before `BatchNorm`, whose β replaces it).
        l2: float >= 0, λ (default 0.0: no L2 cost).
        seed: int or None, seed of the kernel initializer (default None).
        **kwargs: any other `keras.layers.Conv2D` argument (`strides`, `padding`,
            `data_format`, `dilation_rate`, `groups`, `activation`, `bias_initializer`, ...)
            and base layer argument (`name`, `dtype`, ...).
    """

    def __init__(
        self,
        filters,
        kernel_size,
        initializer="he",
        use_bias=True,
        l2=0.0,
        seed=None,
        **kwargs,
    ):
        if isinstance(filters, bool) or not isinstance(filters, int) or filters <= 0:
            raise ValueError(f"`filters` must be a positive int. Received: filters={filters!r}")
        for replaced, by in (("kernel_initializer", "initializer"), ("kernel_regularizer", "l2")):
            # None is allowed: Keras' Conv2D configs hold it, and from_config passes them on.
            value = kwargs.pop(replaced, None)
            if value is not None:
                raise ValueError(
                    f"`{replaced}` is not an argument of tfnet.layers.Conv2D: use `{by}`. "
                    f"Received: {replaced}={value!r}"
                )
        super().__init__(filters, kernel_size, use_bias=use_bias, **kwargs)
        self.kernel_initializer = self._set_kernel_options(initializer, l2, seed)

    def call(self, inputs):
        self._add_l2_cost(inputs)
        return super().call(inputs)

    def get_config(self):
        config = super().get_config()
        del config["kernel_initializer"], config["kernel_regularizer"]
        return {**config, **self._kernel_config()}
