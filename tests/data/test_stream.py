"""The streamed window's positions: each slot the mini-batch the in-memory path gathers."""

import numpy as np
import pytest

from tfnet.data import order, stream


@pytest.mark.parametrize("start, num_steps", [(0, 3), (2, 5), (3, 1), (7, 9)])
def test_each_slot_holds_its_steps_mini_batch_padded_with_example_zero(start, num_steps):
    m, seed, b = 10, 3, 4  # 3 steps per epoch, the last of 2 examples
    positions = stream.WindowPositions(m, seed, b).positions(start, num_steps).reshape(num_steps, b)
    for slot, step in enumerate(range(start, start + num_steps)):
        epoch, batch = divmod(step, 3)
        expected = order.batch_indices(order.epoch_order(m, seed, epoch), batch, b).numpy()
        np.testing.assert_array_equal(positions[slot, :len(expected)], expected)
        np.testing.assert_array_equal(positions[slot, len(expected):], 0)


def test_every_epoch_reads_each_example_once():
    positions = stream.WindowPositions(10, 0, 4).positions(0, 6).reshape(2, 12)  # two epochs
    for epoch in positions:
        real = np.concatenate([epoch[:4], epoch[4:8], epoch[8:10]])
        assert sorted(real) == list(range(10))
