"""Plain (mini-batch) gradient descent, the course's first optimiser."""

import keras
from keras import ops

from tfnet._checks import check_learning_rate
from tfnet.optimizers.masking import MaskedUpdates


@keras.saving.register_keras_serializable(package="tfnet")
class GradientDescent(MaskedUpdates, keras.optimizers.Optimizer):
    """Gradient descent: ``w ← w − α g``.

    ``g`` is the gradient of the mini-batch cost with respect to ``w`` and ``α`` the learning rate.
    The same as Keras' ``SGD(momentum=0)`` (docs/methods.md §7), which it is tested against. A sparse
    gradient (``tf.IndexedSlices``) updates only its rows, which is the dense update exactly.

    Args:
      learning_rate: α, a float > 0, a ``LearningRateSchedule`` or a callable. Defaults to 0.01.
      name: None (default) takes a unique name from the class name, as Keras names its own
        optimisers: ``"gradient_descent"``, then ``"gradient_descent_1"``, ..., so two
        optimisers in one model never share variable paths.
      **kwargs: any ``keras.optimizers.Optimizer`` argument (``clipnorm``, ``clipvalue``,
        ``global_clipnorm``, ``weight_decay``, ``use_ema``, ``gradient_accumulation_steps``,
        ``loss_scale_factor``, ...).

    Raises:
      ValueError: if a numeric ``learning_rate`` is <= 0.
    """

    def __init__(self, learning_rate=0.01, name=None, **kwargs):
        check_learning_rate(learning_rate)
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        alpha = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        self.assign_sub(variable, ops.multiply(gradient, self.masked(alpha)))
