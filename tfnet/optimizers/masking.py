"""An update applied only when the training step's guard found it finite, without a branch.

The training step (``tfnet.training.step``) applies no update whose cost or gradient is not
finite. Written as ``tf.cond(finite, apply, skip)``, XLA turns the branch into a select of every
variable and slot between its old and new value, and keeps copies of all of them alive: a fifth
of an MLP's compiled step. tfnet's optimisers take the decision as a number instead,
f = 1 (finite) or 0, and multiply each increment's scalar coefficient by it:

    v ← v + (g − v)·((1 − β)·f),     w ← w − v·(α_t·f) / (√s + ε)

With f = 1 every coefficient, and so every value, is the unmasked one bit for bit (c · 1 = c
exactly; the scalar is formed before it meets the tensors, so XLA fuses the update as it fuses
the unmasked one); with f = 0 nothing changes (x + 0 = x: the gradient is zeroed where it is not
finite first, so every increment is finite). A slot the update overwrites rather than increments (RMSprop's s) takes the new value
where f = 1 (``masked_value``). The step count advances by f (``tfnet.training.step``), so a
bias correction's t skips the dropped step as before.
"""

import contextlib

import tensorflow as tf


class MaskedUpdates:
    """Mixin of tfnet's optimisers: ``with optimizer.masked_by(finite): optimizer.apply(...)``."""

    _update_mask = None  # a float scalar tensor while a masked update is traced, else None

    @property
    def supports_update_mask(self):
        """Whether every change this optimiser makes goes through its ``update_step`` (Keras'
        weight decay, EMA and gradient accumulation would apply outside it)."""
        return (not self.weight_decay and not self.use_ema
                and not self.gradient_accumulation_steps)

    @contextlib.contextmanager
    def masked_by(self, finite):
        """Within it, updates are multiplied by ``finite`` (a bool scalar tensor) as 1 or 0."""
        self._update_mask = tf.cast(finite, tf.float32)
        try:
            yield
        finally:
            self._update_mask = None

    def masked(self, coefficient):
        """``coefficient · f``, a scalar (``coefficient`` when no mask is set)."""
        if self._update_mask is None:
            return coefficient
        return coefficient * tf.cast(self._update_mask, coefficient.dtype)

    def masked_value(self, new, old):
        """``new`` where f = 1, ``old`` where f = 0 (``new`` when no mask is set)."""
        if self._update_mask is None:
            return new
        return tf.where(self._update_mask > 0, new, old)
