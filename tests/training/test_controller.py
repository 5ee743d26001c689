"""Between loop calls: the controller runs K steps at a time and calls its actions in order; K
is chosen up to the next event; what a whole run evaluates, checkpoints and stops when."""

import types

import numpy as np
import pytest
import tensorflow as tf

from helpers import train_config
from tfnet import training
from tfnet.training import controller as controller_lib
from tfnet.training.loop import LoopOutput

STEPS_PER_EPOCH = 13  # moons: 800 training examples, batch 64


SMALL = dict(hidden_units=(8,), seed=1, jit_compile="off")


def _checkpoint_steps(directory):
    state = tf.train.get_checkpoint_state(str(directory))
    return [int(path.rsplit("-", 1)[1]) for path in state.all_model_checkpoint_paths]


class FakeLoop:
    """A loop that advances its position by the steps asked, a non-finite stop at ``stop_at``."""

    def __init__(self, stop_at=None):
        self.position = tf.Variable(0, dtype=tf.int64)
        self.calls, self.stop_at = [], stop_at

    def __call__(self, num_steps):
        start = int(self.position.numpy())
        steps = num_steps
        if self.stop_at is not None and start < self.stop_at <= start + num_steps:
            steps = self.stop_at - start - 1
        self.position.assign_add(steps)
        self.calls.append(num_steps)
        return LoopOutput(start=start, steps=steps, skipped=0, first_nonfinite_step=0,
                          nonfinite_cost=float("nan"), stopped=steps < num_steps, logged=[])


class Recorder:
    """An action that notes what it saw, and the hooks called on it."""

    def __init__(self, name, journal):
        self.name, self.journal = name, journal

    def __enter__(self):
        self.journal.append((self.name, "enter"))
        return self

    def __exit__(self, *exc_info):
        self.journal.append((self.name, "exit", exc_info[0] is not None))

    def begin(self):
        self.journal.append((self.name, "begin"))

    def end(self):
        self.journal.append((self.name, "end"))

    def __call__(self, output):
        self.journal.append((self.name, output.start, output.end, output.seconds > 0))


def test_the_controller_calls_every_action_in_order_after_each_call_until_the_end():
    journal, loop = [], FakeLoop()
    controller = controller_lib.Controller(
        loop, total_steps=10, steps_per_call=lambda position: 4,
        actions=[Recorder("a", journal), Recorder("b", journal)])
    assert controller.run() is False
    assert loop.calls == [4, 4, 4]  # the loop runs past the end only if asked: the caller's K
    assert journal == [("a", "enter"), ("b", "enter"), ("a", "begin"), ("b", "begin"),
                       ("a", 0, 4, True), ("b", 0, 4, True), ("a", 4, 8, True), ("b", 4, 8, True),
                       ("a", 8, 12, True), ("b", 8, 12, True), ("a", "end"), ("b", "end"),
                       ("b", "exit", False), ("a", "exit", False)]


def test_stop_when_ends_the_run_early_and_an_error_leaves_every_action_it_entered():
    journal, loop = [], FakeLoop()
    positions = []
    controller = controller_lib.Controller(
        loop, 100, lambda position: 3, actions=[Recorder("a", journal)],
        stop_when=lambda: positions.append(int(loop.position.numpy())) or len(positions) > 2)
    assert controller.run() is True and loop.calls == [3, 3]

    def failing(output):
        raise RuntimeError("an action failed")

    journal.clear()
    with pytest.raises(RuntimeError, match="an action failed"):
        controller_lib.Controller(FakeLoop(), 100, lambda p: 3,
                                  actions=[Recorder("a", journal), failing]).run()
    assert journal[-1] == ("a", "exit", True) and ("a", "end") not in journal


def _steps_per_call(steps_per_loop=0, epochs=10, eval_every_epochs=1, checkpoint_every_steps=0):
    evaluation = types.SimpleNamespace(next_evaluation_step=lambda position: min(
        (-(-(position // STEPS_PER_EPOCH + 1) // eval_every_epochs)) * eval_every_epochs,
        epochs) * STEPS_PER_EPOCH)
    return controller_lib.StepsPerCall(epochs * STEPS_PER_EPOCH, evaluation,
                                       checkpoint_every_steps, steps_per_loop, 10_000)


def _timed(steps_per_call, steps, seconds):
    steps_per_call.action(LoopOutput(0, steps, 0, 0, float("nan"), False, [], seconds))


def test_a_call_runs_to_the_next_event_and_lasts_about_a_second_at_most():
    choose = _steps_per_call(eval_every_epochs=4, checkpoint_every_steps=30)
    # First call: its time includes compiling, so it is kept short.
    assert choose(0) == controller_lib.FIRST_CALL_STEPS
    _timed(choose, 16, 5.0)  # the first call: compiling, not a speed
    assert choose.seconds_per_step is None and choose.steady_seconds_per_step is None
    _timed(choose, 10_000, 0.1)  # 1e-5 s per step
    assert choose(0) == 30  # the checkpoint at step 30
    assert choose(30) == 52 - 30  # the evaluation after epoch 4
    assert choose(120) == 130 - 120  # the end (epoch 10 evaluated)
    slow = _steps_per_call(eval_every_epochs=10)
    _timed(slow, 16, 9.0)
    _timed(slow, 1000, 2.0)  # slow steps, 2e-3 s: about a second's worth is 500
    assert slow(0) == 130  # but the end comes first
    long_run = _steps_per_call(epochs=10**6 // STEPS_PER_EPOCH, eval_every_epochs=10**5)
    _timed(long_run, 16, 9.0)
    _timed(long_run, 1000, 2.0)
    assert long_run(0) == int(controller_lib.SECONDS_PER_CALL / 2e-3)
    _timed(long_run, 20, 0.04)  # and at most 8 times the last call
    assert long_run(0) == 160
    assert long_run.steady_seconds_per_step == pytest.approx(2.04 / 1020)
    assert _steps_per_call(steps_per_loop=1)(5) == 1


def test_evaluations_every_few_epochs_and_the_last_checkpoints_by_steps(tmp_path):
    config = train_config(tmp_path / "run", SMALL, epochs=7, eval_every_epochs=3, checkpoint_every_steps=20,
                     keep_checkpoints=100)
    result = training.train(config, verbose=0)
    assert [r["epoch"] for r in result.history] == [3, 6, 7]
    assert [r["step"] for r in result.history] == [39, 78, 91]
    # Every multiple of 20 is a loop boundary, and the end is checkpointed too.
    assert _checkpoint_steps(tmp_path / "run" / "checkpoints") == [20, 40, 60, 80, 91]


def test_a_run_resumed_where_evaluation_became_due_evaluates_that_epoch_first(tmp_path):
    # A run evaluated every 2 epochs, checkpointed every epoch; it is made to look killed after
    # its checkpoint at the end of epoch 1, which was not evaluated then.
    training.train(train_config(tmp_path / "run", SMALL, epochs=2, eval_every_epochs=2, checkpoint_every_steps=13),
                   verbose=0)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert _checkpoint_steps(checkpoints) == [13, 26]
    first = str(checkpoints / "ckpt-13")
    tf.compat.v1.train.update_checkpoint_state(str(checkpoints), first, all_model_checkpoint_paths=[first])
    resumed = training.train(train_config(tmp_path / "run", SMALL, epochs=2, eval_every_epochs=1), verbose=0)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    assert [r["step"] for r in resumed.history] == [13, 26]


def test_a_diverging_run_stops_at_the_first_non_finite_step_and_keeps_the_last_checkpoint(tmp_path):
    config = train_config(tmp_path / "run", SMALL, optimizer="keras_sgd", learning_rate=1e12, checkpoint_every_steps=2,
                     steps_per_loop=0, log_every_steps=1)
    with pytest.raises(training.NonFiniteError) as raised:
        training.train(config, verbose=0)
    message = str(raised.value)
    assert "non-finite cost or gradient" in message and "at step 3 (epoch 1, mini-batch 3)" in message
    good = tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))
    assert good.endswith("ckpt-2") and f"Last good checkpoint, left intact: {good}" in message
    reader = tf.train.load_checkpoint(good)
    assert all(np.isfinite(reader.get_tensor(k)).all() for k in reader.get_variable_to_shape_map()
               if reader.get_variable_to_dtype_map()[k].is_floating)


def test_skip_step_drops_the_non_finite_updates_and_says_so(tmp_path, capsys):
    config = train_config(tmp_path / "run", SMALL, optimizer="keras_sgd", learning_rate=1e12, epochs=1,
                     on_nonfinite="skip_step")
    training.train(config, verbose=2)
    assert "update skipped" in capsys.readouterr().out
