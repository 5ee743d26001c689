"""RMSprop, as the course writes it (ε added outside the square root by default)."""

import keras
import tensorflow as tf
from keras import ops

from tfnet._checks import check_decay, check_epsilon, check_learning_rate
from tfnet.optimizers.masking import MaskedUpdates


@keras.saving.register_keras_serializable(package="tfnet")
class RMSprop(MaskedUpdates, keras.optimizers.Optimizer):
    """RMSprop: each step is divided by the root of an average ``s`` of the squared gradients.

    With ``s`` starting at 0, per parameter tensor::

        s ← β₂ s + (1 − β₂) g²
        w ← w − (α g) / (√s + ε)          (epsilon_inside_sqrt=False, the course's form)
        w ← w − (α g) / √(s + ε)          (epsilon_inside_sqrt=True, Keras' form)

    Differences from Keras' ``RMSprop(rho, epsilon)`` (docs/methods.md §7): Keras always puts ε
    inside the root (and defaults it to 1e-7); with ``epsilon_inside_sqrt=True`` and
    ``rho = β₂`` the two are the same update. Keras computes ``s`` as written here; its
    ``centered`` and ``momentum`` options have no counterpart here.

    A sparse gradient (``tf.IndexedSlices``) is converted to its dense equivalent (slices of a
    row looked up several times summed) before g² is formed: every row of ``s`` decays, rows
    without a gradient included. Keras 3.15's own RMSprop and Adam square each slice instead,
    so for a row looked up twice their g² is a² + b², not (a + b)².

    Args:
      learning_rate: α, a float > 0, a ``LearningRateSchedule`` or a callable. Defaults to 0.001.
      beta2: β₂ in [0, 1), the averaging coefficient of ``s``. Defaults to 0.9.
      epsilon: ε >= 0, keeps the division finite. Defaults to 1e-8.
      epsilon_inside_sqrt: divide by ``√(s + ε)`` instead of ``√s + ε``. Defaults to False.
      name: None (default) takes a unique name from the class name, as Keras names its own
        optimisers: ``"rm_sprop"``, then ``"rm_sprop_1"``, ... (one counter with Keras'
        ``RMSprop``, named alike), so two optimisers in one model never share variable paths.
      **kwargs: any ``keras.optimizers.Optimizer`` argument (``clipnorm``, ``weight_decay``,
        ``use_ema``, ``gradient_accumulation_steps``, ``loss_scale_factor``, ...).

    Raises:
      ValueError: if a numeric ``learning_rate`` is <= 0, ``beta2`` is outside [0, 1) or
        ``epsilon`` < 0.

    Reference: Hinton, Srivastava and Swersky, Neural Networks for Machine Learning, lecture 6e.
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta2=0.9,
        epsilon=1e-8,
        epsilon_inside_sqrt=False,
        name=None,
        **kwargs,
    ):
        check_learning_rate(learning_rate)
        check_decay("beta2", beta2)
        check_epsilon(epsilon)
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta2 = beta2
        self.epsilon = epsilon
        self.epsilon_inside_sqrt = epsilon_inside_sqrt

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._s = self.add_optimizer_variables(var_list, "s")

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        alpha = ops.cast(learning_rate, dtype)
        # ops.square of tf.IndexedSlices squares each slice, so a row looked up twice would get
        # a² + b², not (a + b)²; s decays on every row anyway, so the dense gradient costs little.
        gradient = ops.cast(tf.convert_to_tensor(gradient), dtype)
        # convert_to_tensor, not ops.cast: ops.cast rounds a Python float through float32,
        # an error of ~1e-8 in a float64 run (Keras' SGD and Adam do that with their β).
        beta2 = ops.convert_to_tensor(self.beta2, dtype)
        epsilon = ops.convert_to_tensor(self.epsilon, dtype)
        s = self._s[self._get_variable_index(variable)]
        self.assign(s, self.masked_value(
            ops.add(ops.multiply(beta2, s), ops.multiply(1 - beta2, ops.square(gradient))), s))
        # A Python bool, fixed when the step is traced (no tensor branching).
        if self.epsilon_inside_sqrt:
            denominator = ops.sqrt(ops.add(s, epsilon))
        else:
            denominator = ops.add(ops.sqrt(s), epsilon)
        self.assign_sub(variable, ops.divide(ops.multiply(self.masked(alpha), gradient), denominator))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta2": self.beta2,
                "epsilon": self.epsilon,
                "epsilon_inside_sqrt": self.epsilon_inside_sqrt,
            }
        )
        return config
