"""Batch normalisation with running averages for inference (docs/methods.md §6, §10)."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfnet")
class BatchNorm(keras.layers.Layer):
    """Batch normalisation of pre-activations, with optional bias-corrected running averages.

    Per feature / channel (the `axis` of the input; statistics are taken over all other axes,
    m values each):

    Training (`training=True` and `layer.trainable`):

        mu         = (1/m) sum(z)
        sigma2     = (1/m) sum((z - mu)**2)                      # biased variance
        z_norm     = (z - mu) / sqrt(sigma2 + epsilon)
        z_tilde    = gamma * z_norm + beta
        moving_mean     = moving_mean * momentum + mu * (1 - momentum)
        moving_variance = moving_variance * momentum + sigma2 * (1 - momentum)
        step       = step + 1                                    # only with bias_correction

    Inference (`training=False` or `None`, or a frozen layer with `trainable=False`): the same
    `z_tilde` with `mu, sigma2` replaced by

        moving_mean, moving_variance                             # bias_correction=False
        moving_mean / (1 - momentum**step),
        moving_variance / (1 - momentum**step)                   # bias_correction=True, step >= 1

    so a single example has a well-defined output. With `bias_correction=True` both running
    averages start at 0 (docs/methods.md §6: `v_0 = 0`, `v_t / (1 - beta**t)`), so inference is
    right after a few steps instead of the hundreds momentum 0.99 needs to forget Keras' start
    values; before the first training step (`step = 0`) the layer uses mean 0 and variance 1,
    like an untrained Keras layer. The normalisation itself is `tf.nn.batch_normalization`, which
    computes `z * inv + (beta - mu * inv)` with `inv = gamma / sqrt(sigma2 + epsilon)`.

    Masking (`mask=`, or the mask Keras attaches after `Masking` or `Embedding(mask_zero=True)`),
    as Keras' `BatchNormalization` does it: `mask` has the inputs' shape without their last axis
    (or a shape that broadcasts to it, e.g. `(batch, steps, 1)` for `(batch, steps, h, c)`) and
    is broadcast over that last axis; a value is used where `mask` is true (non-zero). In training
    the batch statistics are the weighted ones, `w` the broadcast mask as 0 or 1 and m = sum(w):

        mu     = (1/m) sum(w * z)
        sigma2 = (1/m) sum(w * (z - mu)**2)

    so masked steps (padding) enter neither the normalisation nor the running averages; every
    value, masked or not, is then normalised with them, and the mask is passed on to the next
    layer. In inference the mask changes nothing. A channel with no unmasked value in the batch
    (m = 0, e.g. a fully masked input) has no batch statistics: it uses the running estimates
    that inference would use (the bias-corrected ones with `bias_correction=True`, or mean 0 and
    variance 1 before the first step), which leaves those estimates unchanged by the update
    (exactly for the corrected ones, up to rounding for the raw averages); `step` still counts
    the call.

    float16/bfloat16 inputs are normalised in float32 and the result cast back to the layer's
    compute dtype; γ, β and the running averages are stored in the variable dtype (float32 under
    a mixed policy). `gamma`, `beta`, `moving_mean`, `moving_variance` (and `step`) are layer
    weights, the last two (three) non-trainable, so they are saved in checkpoints, `.keras`
    files and exported SavedModels.

    Differences from `keras.layers.BatchNormalization` (equal outputs, running averages and
    gradients otherwise; `tests/layers/test_batch_norm.py`):
    - `bias_correction` and its `step` counter are new.
    - The running averages are mirrored variables with "mean" aggregation: under `tf.distribute`
      every replica ends a step with the mean of the replicas' updates, so all copies agree
      (Keras uses aggregation "none" and lets each replica's copy drift to its own statistics).
      With `synchronized=False` the moving variance is then the mean of the per-replica batch
      variances, not the global one.
    - `synchronized=True` all-reduces the per-replica sums and counts to get the global mean,
      then all-reduces the sums of squared deviations from it (two rounds instead of Keras'
      one-round `E[z**2] - E[z]**2`, which loses precision when |mu| >> sigma); with a mask, the
      weighted sums and counts, so replicas agree on the global masked statistics (Keras'
      masked statistics are always per replica, `synchronized` or not).
    - Masked statistics divide by m, Keras' by `m + 1e-7` (a relative difference of 1e-7 / m);
      with m = 0 Keras uses mean 0 and variance 0, so its outputs are `z / sqrt(epsilon)` and
      its running averages decay towards 0; ours use the running estimates (above).
    - Keras calls `tf.nn.moments`, which takes the deviations from `stop_gradient(mean)`: the
      right values and gradient, but wrong second derivatives (found by `tfnet.gradcheck`'s
      `order=2`; `tests/gradcheck/test_gradcheck_layers.py`). Ours computes the same variance and
      subtracts `(mean - stop_gradient(mean))**2`, which is 0 with a zero gradient and supplies
      the missing second-order term, so the Hessian is that of `mean((z - mean(z))**2)` at
      `tf.nn.moments`' cost.
    - Always centred and scaled (no `center`/`scale`); no initializer, regulariser or constraint
      arguments, no batch renormalisation.

    Args:
        axis: int, the feature / channel axis (default -1: features of a Dense layer, channels
            of an NHWC image).
        momentum: float in [0, 1), the running averages' decay (default 0.99, as Keras).
        epsilon: float > 0 added to the variance (default 1e-3, as Keras).
        bias_correction: bool, start the running averages at 0 and divide them by
            `1 - momentum**step` in inference (default False, Keras' behaviour).
        synchronized: bool, all-reduce the batch statistics across the replicas of a
            `tf.distribute` strategy in training (default False).
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: the pre-activations `z`, any rank >= 1 with the `axis` dimension known.
        training: bool or None, batch statistics when true (and the layer trainable), running
            averages otherwise (default None: inference).
        mask: None or a bool / 0-1 tensor of the inputs' shape without the last axis, or
            broadcastable to it: the values that enter the batch statistics (default None: all).

    Reference: Ioffe and Szegedy, 2015, https://arxiv.org/abs/1502.03167.
    """

    def __init__(
        self,
        axis=-1,
        momentum=0.99,
        epsilon=1e-3,
        bias_correction=False,
        synchronized=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"`axis` must be an int. Received: axis={axis!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"`momentum` must be in [0, 1). Received: momentum={momentum}")
        if not epsilon > 0.0:
            raise ValueError(f"`epsilon` must be > 0. Received: epsilon={epsilon}")
        self.axis = axis
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.bias_correction = bool(bias_correction)
        self.synchronized = bool(synchronized)
        self.supports_masking = True

    def build(self, input_shape):
        ndim = len(input_shape)
        if not -ndim <= self.axis < ndim:
            raise ValueError(
                f"`axis` must be in [-{ndim}, {ndim}) for inputs of shape {input_shape}. "
                f"Received: axis={self.axis}"
            )
        self._channel_axis = self.axis % ndim
        channels = input_shape[self._channel_axis]
        if channels is None:
            raise ValueError(
                f"The `axis` dimension of the inputs must be known. Received: "
                f"input_shape={input_shape}, axis={self.axis}"
            )
        self._reduction_axes = [i for i in range(ndim) if i != self._channel_axis]
        # (1, ..., channels, ..., 1): statistics broadcast against the inputs.
        self._broadcast_shape = [1] * ndim
        self._broadcast_shape[self._channel_axis] = channels
        shape = (channels,)
        self.gamma = self.add_weight(
            shape=shape, name="gamma", initializer="ones", trainable=True, autocast=False
        )
        self.beta = self.add_weight(
            shape=shape, name="beta", initializer="zeros", trainable=True, autocast=False
        )
        self.moving_mean = self.add_weight(
            shape=shape,
            name="moving_mean",
            initializer="zeros",
            trainable=False,
            autocast=False,
            aggregation="mean",
        )
        self.moving_variance = self.add_weight(
            shape=shape,
            name="moving_variance",
            initializer="zeros" if self.bias_correction else "ones",
            trainable=False,
            autocast=False,
            aggregation="mean",
        )
        if self.bias_correction:
            # t of docs/methods.md §6: the number of running-average updates so far.
            self.step = self.add_weight(
                shape=(),
                name="step",
                initializer="zeros",
                dtype="int64",
                trainable=False,
                aggregation="only_first_replica",
            )
        self.input_spec = keras.layers.InputSpec(
            ndim=ndim, axes={self._channel_axis: channels}
        )

    def call(self, inputs, training=None, mask=None):
        if mask is not None:
            mask = self._broadcastable_mask(mask, inputs.shape)
        # float16/bfloat16 statistics overflow or lose precision: normalise in float32
        # (float64 stays float64), as Keras does.
        dtype = keras.backend.result_type(inputs.dtype, "float32")
        z = tf.cast(inputs, dtype)
        if training and self.trainable:
            mean, variance = self._batch_moments(z, mask)
            self._update_moving_averages(mean, variance)
        else:
            mean, variance = self._moving_moments(dtype)
        outputs = tf.nn.batch_normalization(
            z,
            mean=self._broadcast(mean),
            variance=self._broadcast(variance),
            offset=self._broadcast(tf.cast(self.beta, dtype)),
            scale=self._broadcast(tf.cast(self.gamma, dtype)),
            variance_epsilon=self.epsilon,
        )
        return tf.cast(outputs, self.compute_dtype)

    @staticmethod
    def _broadcastable_mask(mask, input_shape):
        """`mask` as a bool tensor of the inputs' rank, broadcasting against them (Keras' rule:
        one axis fewer than the inputs, expanded over their last axis)."""
        mask_shape = tuple(mask.shape)
        input_shape = tuple(input_shape)
        if len(mask_shape) != len(input_shape) - 1 or any(
            m is not None and n is not None and m not in (1, n)
            for m, n in zip(mask_shape, input_shape)
        ):
            raise ValueError(
                "`mask` must have the inputs' shape without their last axis, or a shape that "
                f"broadcasts to it. Received: mask.shape={mask_shape}, "
                f"inputs.shape={input_shape}"
            )
        return tf.expand_dims(tf.cast(mask, tf.bool), -1)

    def _broadcast(self, statistic):
        if self._channel_axis == len(self._broadcast_shape) - 1:
            return statistic  # (channels,) already broadcasts against the last axis
        return tf.reshape(statistic, self._broadcast_shape)

    def _batch_moments(self, z, mask):
        """Mean and biased variance per channel over the unmasked values of this replica's
        batch, or of the global batch when synchronized across several replicas."""
        replica_context = tf.distribute.get_replica_context()
        synchronized = (
            self.synchronized
            and replica_context is not None
            and replica_context.num_replicas_in_sync > 1
        )
        if mask is None and not synchronized:
            # tf.nn.moments takes the deviations from stop_gradient(μ): the gradient is right
            # (the dropped term, -2·mean(z - μ)·dμ, is 0) but the second derivatives miss
            # -2·dμ·dμᵀ. Subtracting (μ - stop_gradient(μ))², whose value and first derivative
            # are 0 and whose second derivative is that term, gives the variance of the
            # written-out mean((z - μ)²) to second order at the cost of tf.nn.moments (writing
            # it out costs a reduction over the batch in the backward pass: 15-25 % more time).
            mean = tf.reduce_mean(z, axis=self._reduction_axes)
            fixed_mean = tf.stop_gradient(mean)
            variance = tf.reduce_mean(tf.square(z - self._broadcast(fixed_mean)),
                                      axis=self._reduction_axes)
            return mean, variance - tf.square(mean - fixed_mean)
        mean, variance, count = self._two_round_moments(
            z, mask, replica_context if synchronized else None
        )
        if mask is None:
            return mean, variance
        # No unmasked value in a channel: its running estimate stands in for the batch
        # statistics, so the update leaves that estimate where it was (class docstring).
        estimated_mean, estimated_variance = self._moving_moments(z.dtype)
        observed = count > 0
        return (tf.where(observed, mean, estimated_mean),
                tf.where(observed, variance, estimated_variance))

    def _two_round_moments(self, z, mask, replica_context):
        """(μ, σ², m) from the sums of the (unmasked) values and of their squared deviations
        from μ, each all-reduced over the replicas when `replica_context` is given.

        Masked values are selected out with `tf.where` (not multiplied by 0), so padding that
        holds inf or NaN stays out of the statistics and the running averages; deviations are
        taken from the differentiable μ, so the second derivatives are right too.
        """
        def total(local):
            if replica_context is None:
                return local
            return replica_context.all_reduce(tf.distribute.ReduceOp.SUM, local)

        if mask is None:
            local_sum = tf.reduce_sum(z, axis=self._reduction_axes)
            local_count = tf.cast(tf.size(z) // tf.shape(local_sum)[0], z.dtype)
        else:
            local_sum = tf.reduce_sum(tf.where(mask, z, 0.0), axis=self._reduction_axes)
            weights = tf.cast(tf.broadcast_to(mask, tf.shape(z)), z.dtype)
            local_count = tf.reduce_sum(weights, axis=self._reduction_axes)
        total_sum, count = total([local_sum, local_count])
        mean = tf.math.divide_no_nan(total_sum, count)
        deviation = z - self._broadcast(mean)
        if mask is not None:
            deviation = tf.where(mask, deviation, 0.0)
        squared_deviation = total(tf.reduce_sum(tf.square(deviation), axis=self._reduction_axes))
        return mean, tf.math.divide_no_nan(squared_deviation, count), count

    def _update_moving_averages(self, mean, variance):
        # Python-float factors, as Keras writes them, so both layers round identically.
        moving_mean = tf.cast(self.moving_mean, mean.dtype)
        moving_variance = tf.cast(self.moving_variance, mean.dtype)
        self.moving_mean.assign(moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            moving_variance * self.momentum + variance * (1.0 - self.momentum)
        )
        if self.bias_correction:
            self.step.assign_add(1)

    def _moving_moments(self, dtype):
        moving_mean = tf.cast(self.moving_mean, dtype)
        moving_variance = tf.cast(self.moving_variance, dtype)
        if not self.bias_correction:
            return moving_mean, moving_variance
        step = tf.cast(self.step, dtype)
        correction = 1.0 - tf.pow(tf.constant(self.momentum, dtype), step)  # 0 before any step
        trained = step > 0
        mean = tf.where(trained, tf.math.divide_no_nan(moving_mean, correction), 0.0)
        variance = tf.where(trained, tf.math.divide_no_nan(moving_variance, correction), 1.0)
        return mean, variance

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "bias_correction": self.bias_correction,
            "synchronized": self.synchronized,
        }
