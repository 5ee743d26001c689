"""absl flags for the scripts, defined once from ``TrainConfig``'s fields.

Scripts call ``define_train_flags()`` (nothing is defined at import) and, after parsing,
``train_config_from_flags(FLAGS)``. Every flag gets its field's help and a validator that runs the
field's check, so an invalid value stops the script at parse time, before any work, with one line
naming the flag, the value and what is allowed; rules that involve two flags (--dataset with
--data_dir, --lr_schedule=step with --decay_interval) are multi-flag validators. The library
itself never reads flags.
"""

import dataclasses

from absl import flags

from tfnet import config as config_lib


def define_train_flags(flag_values=flags.FLAGS, names=None):
    """Defines one flag per ``TrainConfig`` field (or per field in ``names``)."""
    for field in dataclasses.fields(config_lib.TrainConfig):
        if names is not None and field.name not in names:
            continue
        _define(field, flag_values)
    if "dataset" in flag_values and "data_dir" in flag_values:
        flags.register_multi_flags_validator(
            ["dataset", "data_dir"], _dataset_available, message="invalid --dataset",
            flag_values=flag_values,
        )
    if "lr_schedule" in flag_values and "decay_interval" in flag_values:
        flags.register_multi_flags_validator(
            ["lr_schedule", "decay_interval"], _decay_interval_given,
            message="invalid --decay_interval", flag_values=flag_values,
        )


def _decay_interval_given(values):
    try:
        config_lib.check_decay_interval(values["lr_schedule"], values["decay_interval"])
    except ValueError as error:
        raise flags.ValidationError(f"--{error}") from None
    return True


def _dataset_available(values):
    from tfnet import data  # Imported lazily: it imports TensorFlow.

    try:
        data.check_available(values["dataset"], values["data_dir"])
    except data.DatasetNotFoundError as error:
        raise flags.ValidationError(f"--dataset={values['dataset']}: {error}") from None
    return True


def _define(field, flag_values):
    name, default, help = field.name, field.default, field.metadata["help"]
    if name == "augment":
        from tfnet import augment  # The names and their descriptions, for --helpfull.

        help = f"{help}\n{augment.describe()}"
    elif name == "optimizer":
        from tfnet import optimizers  # The names and their update rules, for --helpfull.

        help = f"{help}\n{optimizers.describe()}"
    if isinstance(default, bool):
        flags.DEFINE_bool(name, default, help, flag_values=flag_values)
    elif isinstance(default, tuple):
        flags.DEFINE_list(name, [str(v) for v in default], help, flag_values=flag_values)
    elif isinstance(default, int):
        flags.DEFINE_integer(name, default, help, flag_values=flag_values)
    elif isinstance(default, float):
        flags.DEFINE_float(name, default, help, flag_values=flag_values)
    else:
        flags.DEFINE_string(name, default, help, flag_values=flag_values)
    if field.metadata["check"] is not None:
        flags.register_validator(
            name, _validator(field), message=f"invalid --{name}", flag_values=flag_values
        )


def _validator(field):
    def validate(value):
        try:
            config_lib.check(field.name, _convert(field, value))
        except ValueError as error:
            raise flags.ValidationError(f"--{error}") from None
        return True

    return validate


def _convert(field, value):
    """A parsed flag value as the field's type (lists of strings become tuples of numbers of
    the default's element type)."""
    if isinstance(field.default, tuple):
        element = type(field.default[0])
        try:
            return tuple(element(v) for v in value)
        except ValueError:
            kind = "integers" if element is int else "numbers"
            config_lib.fail(field.name, f"a comma-separated list of {kind}", ",".join(value))
    return value


def train_config_from_flags(flag_values=flags.FLAGS, **overrides):
    """Builds a validated ``TrainConfig`` from the parsed flags that exist for its fields."""
    values = {}
    for field in dataclasses.fields(config_lib.TrainConfig):
        if field.name in flag_values:
            values[field.name] = _convert(field, flag_values[field.name].value)
    values.update(overrides)
    return config_lib.validate(config_lib.TrainConfig(**values))
