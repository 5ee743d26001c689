"""Each action alone, driven by made-up loop outputs (no model, no loop): what it does after a
call, and when."""

import signal
import types

import pytest
import tensorflow as tf

from tfnet.training import actions
from tfnet.training.loop import LoopOutput

STEPS_PER_EPOCH = 13


def _output(start, steps, **overrides):
    values = dict(start=start, steps=steps, skipped=0, first_nonfinite_step=0,
                  nonfinite_cost=float("nan"), stopped=False, logged=[], seconds=0.1)
    values.update(overrides)
    return LoopOutput(**values)


class FakeState:
    """A ``RunState``'s position, history and checkpoints, in memory."""

    def __init__(self, position=0):
        self.global_step = tf.Variable(position, dtype=tf.int64)
        self.history, self.saved = [], []

    def append_history(self, record):
        self.history.append(record)

    def save(self):
        self.saved.append(int(self.global_step.numpy()))
        return f"ckpt-{self.saved[-1]}"


def _outputs():
    return types.SimpleNamespace(flushed=0, epochs=[], log_epoch=lambda r, m: None,
                                 flush=lambda: None)


def test_checkpoints_are_written_on_step_boundaries_crossed_and_at_the_end():
    state = FakeState()
    checkpoints = actions.Checkpoints(state, _outputs(), every_steps=20, every_seconds=0)
    checkpoints.begin()
    for start, steps in ((0, 16), (16, 4), (20, 19), (39, 5), (44, 3)):
        state.global_step.assign(start + steps)
        checkpoints(_output(start, steps))
    assert state.saved == [20, 44]  # 39 does not cross 40; 44 does
    checkpoints.end()
    assert state.saved == [20, 44, 47]
    checkpoints.end()  # the end already saved: nothing more
    assert state.saved == [20, 44, 47]


def test_checkpoints_by_time():
    state = FakeState()
    checkpoints = actions.Checkpoints(state, _outputs(), every_steps=0, every_seconds=3600)
    checkpoints.begin()
    checkpoints(_output(0, 5))
    assert state.saved == []
    checkpoints._last_time -= 3600  # an hour later
    checkpoints(_output(5, 5))
    assert state.saved == [0]  # the state's position (this fake does not advance it)


def test_the_guard_stops_at_a_stopped_call_and_reports_skipped_ones():
    said, flushed = [], []
    guard = actions.NonFiniteGuard("stop", STEPS_PER_EPOCH, lambda: "ckpt-26",
                                   lambda: flushed.append(1), said.append)
    guard(_output(0, 16))
    with pytest.raises(actions.NonFiniteError, match=r"at step 30 \(epoch 3, mini-batch 4\).*"
                       r"Last good checkpoint, left intact: ckpt-26") as raised:
        guard(_output(16, 13, stopped=True, first_nonfinite_step=30, nonfinite_cost=float("inf")))
    assert raised.value.exit_code == 3 and flushed == [1]
    skipping = actions.NonFiniteGuard("skip_step", STEPS_PER_EPOCH, lambda: None, None, said.append)
    skipping(_output(0, 20, skipped=3, first_nonfinite_step=7))
    assert said == ["step 7: non-finite cost or gradient (cost=nan), update skipped (2 more in "
                    "this call)"]


def test_a_signal_checkpoints_then_stops_with_128_plus_its_number():
    state = FakeState(26)
    checkpoints = actions.Checkpoints(state, _outputs(), 0, 0)
    checkpoints.begin()
    stop = actions.StopOnSignal(checkpoints, STEPS_PER_EPOCH, "runs/x")
    before = signal.getsignal(signal.SIGTERM)  # the default, or a handler of Ray's in the suite
    with stop:
        stop(_output(10, 16))  # no signal: nothing
        assert state.saved == []
        signal.raise_signal(signal.SIGTERM)  # noted, not acted on
        with pytest.raises(actions.TrainingInterrupted, match=r"SIGTERM: stopped after step 26 "
                           r"\(epoch 2, mini-batch 13\); checkpoint ckpt-26") as raised:
            stop(_output(10, 16))
    assert raised.value.exit_code == 128 + signal.SIGTERM and state.saved == [26]
    assert signal.getsignal(signal.SIGTERM) is before  # handlers back


def _evaluation(state, evaluated, listeners=(), epochs=10, every=3):
    def evaluate():
        evaluated.append(int(state.global_step.numpy()))
        return {"train": (0.5, 0.8), "dev": (0.6, 0.7)}

    return actions.Evaluation(evaluate, state, _outputs(), None,
                              types.SimpleNamespace(learning_rate=0.01), epochs, every,
                              STEPS_PER_EPOCH, lambda text: None, listeners)


def test_evaluation_at_the_end_of_every_nth_epoch_and_the_last_then_its_listeners():
    state, evaluated, heard = FakeState(), [], []
    evaluation = _evaluation(state, evaluated, [lambda r, epochs_since: heard.append(epochs_since)])
    evaluation.begin()
    for start, steps in ((0, 26), (26, 13), (39, 40), (79, 51)):
        state.global_step.assign(start + steps)
        evaluation(_output(start, steps))
        assert (evaluation.record is not None) == ((start + steps) in (39, 78, 130))
    # 79 = 39 + 40 is not an epoch's end; the run's loop calls end at events (78) in practice.
    assert evaluated == [39, 130] and [r["epoch"] for r in state.history] == [3, 10]
    assert heard == [3, 7]
    assert evaluation.next_evaluation_step(40) == 78 and evaluation.next_evaluation_step(118) == 130


def test_a_run_resumed_at_an_epoch_now_evaluated_evaluates_it_first():
    state, evaluated = FakeState(position=2 * STEPS_PER_EPOCH), []
    state.history = [dict(epoch=1)]
    _evaluation(state, evaluated, every=2).begin()
    assert evaluated == [26]
    state2 = FakeState(position=2 * STEPS_PER_EPOCH)
    state2.history = [dict(epoch=2)]  # evaluated already
    _evaluation(state2, evaluated, every=2).begin()
    assert evaluated == [26]


def test_user_actions_run_only_after_an_evaluation_with_its_record():
    state, seen = FakeState(), []
    evaluation = _evaluation(state, [], every=1)
    user = actions.UserActions(evaluation, [seen.append], "runs/x")
    for start, steps in ((0, 5), (5, 8), (13, 3)):
        state.global_step.assign(start + steps)
        evaluation(_output(start, steps))
        user(_output(start, steps))
    assert [(m["epoch"], m["step"], m["run_dir"]) for m in seen] == [(1, 13, "runs/x")]
