"""Adam, as the course writes it (bias-corrected moments, ε added to √ŝ)."""

import keras
import tensorflow as tf
from keras import ops

from tfnet._checks import check_decay, check_epsilon, check_learning_rate
from tfnet.optimizers.masking import MaskedUpdates


@keras.saving.register_keras_serializable(package="tfnet")
class Adam(MaskedUpdates, keras.optimizers.Optimizer):
    """Adam: momentum's average ``v`` divided by RMSprop's root, both bias-corrected.

    The course's equations, with ``t = iterations + 1`` and ``v``, ``s`` starting at 0::

        v ← β₁ v + (1 − β₁) g
        s ← β₂ s + (1 − β₂) g²
        v_hat = v / (1 − β₁^t),   s_hat = s / (1 − β₂^t)
        w ← w − α v_hat / (√s_hat + ε)

    The code computes the same update with the averages updated in place as
    ``v + (1 − β₁)(g − v)`` and ``s + (1 − β₂)(g² − s)`` (one element-wise operation fewer each,
    equal up to rounding) and the bias corrections folded into two scalars per step (multiply
    numerator and denominator by √(1 − β₂^t)), so nothing extra is formed element-wise::

        α_t = α √(1 − β₂^t) / (1 − β₁^t)
        ε_t = ε √(1 − β₂^t)               (epsilon_hat=False: the course's ε)
        ε_t = ε                           (epsilon_hat=True: Keras' constant "epsilon hat")
        w ← w − (v α_t) / (√s + ε_t)

    Differences from Keras' ``Adam(beta_1, beta_2, epsilon)`` (docs/methods.md §7): Keras uses the
    last line with a constant ε ("epsilon hat", default 1e-7), which equals the course's
    update only if ε̂ = ε √(1 − β₂^t); with ``epsilon_hat=True`` this class takes Keras' form.
    Keras rounds β₁, β₂ through float32 in its bias corrections even in float64 (ops.cast of a
    Python float), which this class does not.

    A sparse gradient (``tf.IndexedSlices``) is converted to its dense equivalent (slices of a
    row looked up several times summed) before g² is formed: every row of ``v`` and ``s`` decays, rows
    without a gradient included. Keras 3.15's own RMSprop and Adam square each slice instead,
    so for a row looked up twice their g² is a² + b², not (a + b)².

    Args:
      learning_rate: α, a float > 0, a ``LearningRateSchedule`` or a callable. Defaults to 0.001.
      beta1: β₁ in [0, 1), the averaging coefficient of ``v``. Defaults to 0.9.
      beta2: β₂ in [0, 1), the averaging coefficient of ``s``. Defaults to 0.999.
      epsilon: ε >= 0, keeps the division finite. Defaults to 1e-8.
      epsilon_hat: use Keras' constant ε̂ in place of the course's ε. Defaults to False.
      name: None (default) takes a unique name from the class name, as Keras names its own
        optimisers: ``"adam"``, then ``"adam_1"``, ... (one counter with Keras'
        ``Adam``, named alike), so two optimisers in one model never share variable paths.
      **kwargs: any ``keras.optimizers.Optimizer`` argument (``clipnorm``, ``weight_decay``,
        ``use_ema``, ``gradient_accumulation_steps``, ``loss_scale_factor``, ...).

    Raises:
      ValueError: if a numeric ``learning_rate`` is <= 0, ``beta1`` or ``beta2`` is outside
        [0, 1) or ``epsilon`` < 0.

    Reference: Kingma and Ba, Adam: A Method for Stochastic Optimization,
    https://arxiv.org/abs/1412.6980 (Algorithm 1; "epsilon hat" is the form before §2.1).
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta1=0.9,
        beta2=0.999,
        epsilon=1e-8,
        epsilon_hat=False,
        name=None,
        **kwargs,
    ):
        check_learning_rate(learning_rate)
        check_decay("beta1", beta1)
        check_decay("beta2", beta2)
        check_epsilon(epsilon)
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.epsilon_hat = epsilon_hat

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._v, self._s = self.add_optimizer_variables(var_list, ["v", "s"])

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        alpha = ops.cast(learning_rate, dtype)
        # ops.square of tf.IndexedSlices squares each slice, so a row looked up twice would get
        # a² + b², not (a + b)²; s decays on every row anyway, so the dense gradient costs little.
        gradient = ops.cast(tf.convert_to_tensor(gradient), dtype)
        # convert_to_tensor, not ops.cast: ops.cast rounds a Python float through float32,
        # an error of ~1e-8 in a float64 run (Keras' SGD and Adam do that with their β).
        beta1 = ops.convert_to_tensor(self.beta1, dtype)
        beta2 = ops.convert_to_tensor(self.beta2, dtype)
        epsilon = ops.convert_to_tensor(self.epsilon, dtype)
        t = ops.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)
        v, s = self._v[index], self._s[index]

        # v + (1 − β)(g − v) is β v + (1 − β) g with one element-wise operation fewer.
        # 1 − β is formed in Python: a constant, not one more op per variable and step.
        one_minus_beta1 = ops.convert_to_tensor(1 - self.beta1, dtype)
        one_minus_beta2 = ops.convert_to_tensor(1 - self.beta2, dtype)
        self.assign_add(v, ops.multiply(ops.subtract(gradient, v), self.masked(one_minus_beta1)))
        self.assign_add(s, ops.multiply(ops.subtract(ops.square(gradient), s),
                                        self.masked(one_minus_beta2)))
        root_correction = ops.sqrt(1 - ops.power(beta2, t))  # √(1 − β₂^t), a scalar
        alpha_t = alpha * root_correction / (1 - ops.power(beta1, t))
        # epsilon_hat is a Python bool, fixed when the step is traced (no tensor branching).
        epsilon_t = epsilon if self.epsilon_hat else epsilon * root_correction
        self.assign_sub(variable, ops.divide(ops.multiply(v, self.masked(alpha_t)),
                                             ops.add(ops.sqrt(s), epsilon_t)))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta1": self.beta1,
                "beta2": self.beta2,
                "epsilon": self.epsilon,
                "epsilon_hat": self.epsilon_hat,
            }
        )
        return config
