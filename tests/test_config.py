"""TrainConfig's checks and the flags built from it: cross-field rules, ranges that agree with
the schedules' own, and help texts that state what the code computes."""

import math
import re

import pytest
from absl import flags as absl_flags

from tfnet import config as config_lib
from tfnet import flags as tfnet_flags
from tfnet import build, optimizers, schedules
from tfnet.config import TrainConfig


def _flag_values(names=None):
    """A fresh absl FlagValues holding the train flags (all, or those in ``names``)."""
    values = absl_flags.FlagValues()
    tfnet_flags.define_train_flags(values, names=names)
    return values


# ---- --lr_schedule=step needs --decay_interval ------------------------------------------------

STEP_WITHOUT_INTERVAL = ("decay_interval must be > 0 with lr_schedule=step (the epochs between its "
                         "decays). Received: decay_interval=0.0")


def test_step_schedule_without_decay_interval_is_refused():
    # Before this check the step schedule fell back on its class default and halved α every
    # 10 epochs, whatever the user had meant.
    with pytest.raises(ValueError) as error:
        config_lib.validate(TrainConfig(lr_schedule="step"))
    assert str(error.value) == STEP_WITHOUT_INTERVAL


def test_step_schedule_with_decay_interval_decays_on_it():
    config = config_lib.validate(TrainConfig(lr_schedule="step", decay_interval=3.0, decay_factor=0.5))
    schedule = build.learning_rate(config, steps_per_epoch=10)
    assert float(schedule(29)) == pytest.approx(config.effective_learning_rate, rel=1e-6)
    assert float(schedule(30)) == pytest.approx(config.effective_learning_rate / 2, rel=1e-6)


def test_inverse_time_without_decay_interval_still_decays_every_step():
    config = config_lib.validate(TrainConfig(lr_schedule="inverse_time", decay_rate=1.0))
    schedule = build.learning_rate(config, steps_per_epoch=10)
    assert float(schedule(5)) == pytest.approx(config.effective_learning_rate / 1.5, rel=1e-6)


def test_step_flag_without_decay_interval_stops_at_parse_time():
    values = _flag_values()
    with pytest.raises(absl_flags.IllegalFlagValueError) as error:
        values(["train.py", "--lr_schedule=step"])
    assert f"--{STEP_WITHOUT_INTERVAL}" in str(error.value)
    values = _flag_values()
    values(["train.py", "--lr_schedule=step", "--decay_interval=5"])  # accepted
    assert tfnet_flags.train_config_from_flags(values).decay_interval == 5.0


# ---- decay_base and decay_factor: the flags accept what the schedules accept -------------------

@pytest.mark.parametrize("name, schedule", [("decay_base", "exponential"), ("decay_factor", "step")])
@pytest.mark.parametrize("value", [-0.5, 0.0, 1e-3, 0.5, 1.0, 1.0 + 1e-9, 1.5])
def test_decay_factor_range_agrees_with_the_schedule(name, schedule, value):
    """(0, 1] in both places (docs/methods.md §8: 1 is the no-decay limit, as decay_rate 0 is)."""
    def accepted(check):
        try:
            check()
        except ValueError:
            return False
        return True

    extra = {"decay_interval": 2} if schedule == "step" else {}
    by_schedule = accepted(lambda: schedules.get(schedule, 0.1, 10, **{name: value}, **extra))
    by_config = accepted(lambda: config_lib.check(name, value))
    assert by_config == by_schedule == (0 < value <= 1)


def test_decay_base_of_one_is_a_constant_rate():
    config = config_lib.validate(TrainConfig(lr_schedule="exponential", decay_base=1.0))
    schedule = build.learning_rate(config, steps_per_epoch=10)
    assert float(schedule(1000)) == pytest.approx(config.effective_learning_rate, rel=1e-6)


def test_decay_factor_out_of_range_message_names_the_flag():
    values = _flag_values(names=("decay_factor",))
    with pytest.raises(absl_flags.IllegalFlagValueError) as error:
        values(["train.py", "--decay_factor=1.5"])
    assert "--decay_factor must be in (0, 1]. Received: decay_factor=1.5" in str(error.value)


# ---- help texts -------------------------------------------------------------------------------

def test_optimizer_help_lists_every_name_with_its_description():
    help = _flag_values(names=("optimizer",))["optimizer"].help
    for name in optimizers.NAMES:
        record = optimizers.RECORDS[name]
        line = f"  {name}: {record.update_rule} (default learning rate {record.default_learning_rate:g})"
        assert f"{line}\n" in help + "\n", name
    listed = re.findall(r"^  (\w+): ", help, flags=re.MULTILINE)
    assert tuple(listed) == optimizers.NAMES


def test_inverse_sqrt_help_states_the_computed_formula():
    """The help says decay_k * a0/sqrt(1 + e), what InverseSqrtDecay computes (not k/sqrt(e))."""
    help = TrainConfig.__dataclass_fields__["lr_schedule"].metadata["help"]
    assert "inverse_sqrt decay_k * a0/sqrt(1 + e)" in help
    assert "decay_k/sqrt(e)" not in help
    k, alpha0, steps_per_epoch = 2.0, 0.1, 10
    schedule = schedules.get("inverse_sqrt", alpha0, steps_per_epoch, decay_k=k)
    for epoch in (0, 3, 8):
        expected = k * alpha0 / math.sqrt(1 + epoch)
        assert float(schedule(epoch * steps_per_epoch)) == pytest.approx(expected, rel=1e-6)
