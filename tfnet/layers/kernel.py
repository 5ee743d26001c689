"""The course's kernel initialisations and L2 cost, shared by Dense and Conv2D (docs/methods.md §2,
§3)."""

import numbers

import keras
import tensorflow as tf

INITIALIZERS = ("he", "xavier", "zeros", "random_large")


def kernel_initializer(name, seed=None):
    """The Keras initializer that draws a kernel as docs/methods.md §2.

    `fan_in` is the number of inputs of one unit, as Keras' `VarianceScaling` counts it from the
    kernel's shape: n[l-1] for a Dense kernel `(n[l-1], n[l])`, kh·kw·c_in/groups for a Conv2D
    kernel `(kh, kw, c_in/groups, filters)`.

    - "he":           randn * sqrt(2 / fan_in)  (VarianceScaling(2, "fan_in", untruncated normal))
    - "xavier":       randn * sqrt(1 / fan_in)  (VarianceScaling(1, "fan_in", untruncated normal);
      Keras' GlorotNormal uses 2 / (fan_in + fan_out) and a truncated normal instead)
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


class L2Kernel:
    """Mixin of a Keras layer whose weight `kernel` the course initialises and regularises.

    With `l2 = λ > 0`, every call adds to `layer.losses` (and so to the cost `model.fit` and
    `sum(model.losses)` see)

        l2_cost = λ / (2 m) * sum(kernel**2),    m = batch size * R,

    whose gradient is `(λ / m) kernel`, where R is the number of replicas of the current
    replica context (`tf.distribute.get_replica_context().num_replicas_in_sync`; 1 outside
    `strategy.run`, in cross-replica context inside `strategy.scope()` too). Under
    `tf.distribute` each replica sees its share of the global batch and Keras' trainer scales
    added losses by `1 / R` before the replica gradients are summed, so the total is
    `λ / (2 · global batch) sum(kernel**2)`, as on one device, when the global batch splits
    evenly (an uneven last batch gives each replica `m = R ×` its own share; `tfnet.training`
    instead calls `l2_cost` with the all-reduced global batch). Biases are not regularised.

    A layer calls `_set_kernel_options(initializer, l2, seed)` in `__init__` (it checks them
    and returns the initializer that draws the kernel), `_add_l2_cost(inputs)` in `call`, and
    adds `_kernel_config()` to its config.
    """

    def _set_kernel_options(self, initializer, l2, seed):
        if isinstance(l2, bool) or not isinstance(l2, numbers.Real) or not l2 >= 0.0:
            raise ValueError(f"`l2` must be >= 0. Received: l2={l2!r}")
        drawn_by = kernel_initializer(initializer, seed)
        self.initializer = initializer
        self.l2 = float(l2)
        self.seed = seed
        return drawn_by

    def _add_l2_cost(self, inputs):
        if self.l2 > 0.0:
            # The replica context, not the strategy: inside `strategy.scope()` but outside
            # `strategy.run` (cross-replica context: a gradient check, an evaluation) the whole
            # batch is here, although the strategy has R > 1 replicas.
            context = tf.distribute.get_replica_context()
            replicas = 1 if context is None else context.num_replicas_in_sync
            self.add_loss(self.l2_cost(tf.shape(inputs)[0] * replicas))

    def l2_cost(self, m):
        """`λ / (2 m) * sum(kernel**2)` for a cost averaged over `m` examples (a scalar in the
        kernel's dtype)."""
        kernel = self.kernel
        m = tf.cast(m, kernel.dtype)
        return self.l2 / (2.0 * m) * tf.reduce_sum(tf.square(kernel))

    def _kernel_config(self):
        return {"initializer": self.initializer, "l2": self.l2, "seed": self.seed}
