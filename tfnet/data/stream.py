"""The training split's mini-batches read from disk as training goes, a window of steps at a time.

``WindowPositions(m, seed, b).positions(start_step, num_steps)`` says which examples global steps
``start_step … start_step + num_steps − 1`` train on: step g is mini-batch ``i = g mod ⌈m/b⌉``
of epoch ``e = g div ⌈m/b⌉``, the examples ``order_e[i·b : (i + 1)·b]`` of that epoch's order
(``tfnet.data.order.epoch_order``), the same mini-batch the in-memory path gathers. So the
stream's position is the run's global step, which the checkpoint holds: a resumed run reads from
the restored step on, and every mini-batch is the one an uninterrupted run would have read.

The positions come laid out as the training loop's window is: slot k (rows ``k·b … k·b + b − 1``)
holds step ``start_step + k``; an epoch's smaller last mini-batch fills the start of its slot and
the rest of the slot reads example 0 (the loop takes only the mini-batch's own rows). One read of
all of them (``Split.read_rows``) fills the window for a whole compiled call.
"""

import numpy as np

from tfnet.data.order import epoch_order, steps_per_epoch


class WindowPositions:
    """``positions(start_step, num_steps)`` of one training split, run seed and batch size; keeps
    the last epoch's order it drew, so that a window costs one draw per epoch it enters."""

    def __init__(self, num_examples, seed, batch_size):
        self.num_examples, self.seed, self.batch_size = int(num_examples), int(seed), int(batch_size)
        self.steps_per_epoch = steps_per_epoch(self.num_examples, self.batch_size)
        self._epoch, self._order = None, None

    def order(self, epoch):
        """Epoch ``epoch``'s order of the examples, int64 [m]."""
        if epoch != self._epoch:
            self._order = epoch_order(self.num_examples, self.seed, epoch).numpy().astype(np.int64)
            self._epoch = epoch
        return self._order

    def positions(self, start_step, num_steps):
        """int64 ``[num_steps · b]``: the examples of steps ``start_step …`` in window layout
        (see the module)."""
        b, per_epoch = self.batch_size, self.steps_per_epoch
        positions = np.zeros((num_steps, b), np.int64)
        step, end = int(start_step), int(start_step) + int(num_steps)
        while step < end:
            epoch, batch = divmod(step, per_epoch)
            count = min(per_epoch - batch, end - step)  # this epoch's steps in the window
            examples = self.order(epoch)[batch * b:(batch + count) * b]
            slots = positions[step - start_step:step - start_step + count].reshape(-1)
            slots[:len(examples)] = examples  # only an epoch's last mini-batch can be short
            step += count
        return positions.reshape(-1)
