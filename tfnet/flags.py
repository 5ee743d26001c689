"""absl flags for the scripts, defined once from ``TrainConfig``'s fields.

Scripts call ``define_train_flags()`` (nothing is defined at import) and, after parsing,
``train_config_from_flags(FLAGS)``. Every flag gets its field's help and a validator that runs the
field's check, so an invalid value stops the script at parse time, before any work, with one line
naming the flag, the value and what is allowed; rules that involve several flags (--dataset with
--data_dir, and ``tfnet.config.CROSS_CHECKS``: --lr_schedule=step with --decay_interval,
--keep_prob with --hidden_units, --jit_compile with --strategy and --augment, --strategy=tpu with
--tpu) are multi-flag validators. The library
itself never reads flags.

Defining the flags imports TensorFlow (the ``--augment`` help lists the augmentations, and the
checks of ``--optimizer`` and ``--dataset`` need Keras and the data module), through
``import_tensorflow_quietly`` so that a bad flag still prints one line.
"""

import contextlib
import dataclasses
import os
import re
import sys
import tempfile

from absl import app, flags
from absl import logging as absl_logging

from tfnet import config as config_lib

# A C++ log line as absl writes it, e.g. "I0000 00:00:1796154217.928416   13597 port.cc:153] ...":
# severity letter (Info, Warning, Error, Fatal), date, time (here still seconds since the epoch),
# thread, file:line.
_LOG_LINE = re.compile(rb"^([IWEF])\d{4} [\d:.]+ +\d+ \S+:\d+\] ")
_PRE_INIT_NOTICE = b"WARNING: All log messages before absl::InitializeLog() is called"
# What Python itself writes during the import, kept whatever the level: a warning, a traceback.
_PYTHON_OUTPUT = re.compile(rb"^(\S.*:\d+: \w*Warning: |Traceback \(most recent call last\):)")
_SEVERITY = {b"I": 0, b"W": 1, b"E": 2, b"F": 3}  # TF_CPP_MIN_LOG_LEVEL's numbering
# What a CUDA build of TensorFlow logs, as an error, when it looks for GPUs where there is none.
_NO_GPU = re.compile(rb"failed call to cuInit")


def import_tensorflow_quietly(default_level="2"):
    """Imports TensorFlow, keeping only its start-up log lines at ``TF_CPP_MIN_LOG_LEVEL`` or above.

    TensorFlow 2.21 writes its C++ start-up lines (oneDNN, CUDA drivers, CPU features) through
    absl before absl logging is initialised, and those reach stderr whatever
    ``TF_CPP_MIN_LOG_LEVEL`` says. So the import runs with file descriptor 2 sent to a temporary
    file, whose lines are then written back except the log lines below the level (with their
    continuation lines) and, unless the level is 0, absl's notice about such early lines.
    ``TF_CPP_MIN_LOG_LEVEL`` is set to ``default_level`` where unset, so that TensorFlow filters
    its later lines by the same level. The GPUs are listed inside the same capture: on a machine
    without one, a CUDA build of TensorFlow logs "failed call to cuInit" as an error when it first
    looks, which only says what the empty list says, so that record is dropped when no GPU is
    found. Does nothing when TensorFlow is already imported.

    Args:
      default_level: the level used where ``TF_CPP_MIN_LOG_LEVEL`` is unset: 0 keeps every line,
        1 drops INFO, 2 also WARNING, 3 also ERROR. Default "2".
    """
    if "tensorflow" in sys.modules:
        return
    with _not_importable(NOT_IMPORTED_WITH_TENSORFLOW):
        _import_tensorflow(default_level)


# Packages that TensorFlow and Keras import only because they are installed, none of which a
# script needs at that moment: pandas (Keras' DataFrame support), jax (tf.lite's JAX authoring)
# and matplotlib.pyplot (Keras' image gallery). Kept out of TensorFlow's import, they save about
# 1.5 s of a script's start-up; tfnet's own plots import pyplot later, as usual.
NOT_IMPORTED_WITH_TENSORFLOW = ("pandas", "jax", "matplotlib.pyplot")


@contextlib.contextmanager
def _not_importable(names):
    """Within it, importing any of ``names`` (not imported yet) raises ImportError, as an
    uninstalled package would; afterwards they import as usual."""
    absent = [name for name in names if name not in sys.modules]
    for name in absent:
        sys.modules[name] = None
    try:
        yield
    finally:
        for name in absent:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def _import_tensorflow(default_level):
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", default_level)
    min_level = int(level) if level.isdigit() else 0
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        gpus = None
        try:
            import tensorflow

            gpus = tensorflow.config.list_physical_devices("GPU")
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().splitlines(keepends=True)
            kept = _kept_lines(lines, min_level, drop=_NO_GPU if gpus == [] else None)
            sys.stderr.buffer.write(b"".join(kept))
            sys.stderr.flush()


def _kept_lines(lines, min_level, drop=None):
    """``lines`` without the log records below ``min_level`` nor those matching ``drop`` (a
    compiled pattern); other lines follow their record."""
    kept, keeping = [], True
    for line in lines:
        record = _LOG_LINE.match(line)
        if record:
            keeping = _SEVERITY[record.group(1)] >= min_level and not (drop and drop.search(line))
        elif line.startswith(_PRE_INIT_NOTICE):
            keeping = min_level == 0
        elif _PYTHON_OUTPUT.match(line):
            keeping = True
        # Any other line continues what came before it (e.g. cpu_feature_guard's second line).
        if keeping:
            kept.append(line)
    return kept


def define_config_flags(config_class, flag_values=flags.FLAGS, names=None):
    """Defines one flag per field of ``config_class`` (a dataclass of ``config.setting``s), or
    per field in ``names``: its default, its help and a validator running its check."""
    for field in dataclasses.fields(config_class):
        if names is None or field.name in names:
            _define(field, flag_values, config_class)


def config_from_flags(config_class, flag_values=flags.FLAGS, **overrides):
    """A ``config_class`` from the parsed flags that exist for its fields (and ``overrides``),
    its fields checked."""
    values = {}
    for field in dataclasses.fields(config_class):
        if field.name in flag_values:
            values[field.name] = _convert(field, flag_values[field.name].value)
    values.update(overrides)
    return config_lib.check_fields(config_class(**values))


def define_train_flags(flag_values=flags.FLAGS, names=None):
    """Defines one flag per ``TrainConfig`` field (or per field in ``names``).

    TensorFlow is imported first, with ``import_tensorflow_quietly``.
    """
    import_tensorflow_quietly()
    define_config_flags(config_lib.TrainConfig, flag_values, names)
    data_flags = [name for name in ("dataset", "data_dir", "augment", "label_column",
                                    "image_size", "model") if name in flag_values]
    if all(name in data_flags for name in ("dataset", "data_dir", "augment")):
        flags.register_multi_flags_validator(
            data_flags, _dataset_available, message="invalid --dataset", flag_values=flag_values,
        )
    for names, cross_check in config_lib.CROSS_CHECKS:
        if all(name in flag_values for name in names):
            flags.register_multi_flags_validator(
                list(names), _cross_validator(names, cross_check),
                message=f"invalid --{names[0]}", flag_values=flag_values,
            )


def _cross_validator(names, cross_check):
    fields = config_lib.TrainConfig.__dataclass_fields__

    def validate(values):
        try:
            cross_check({name: _convert(fields[name], values[name]) for name in names})
        except ValueError as error:
            raise flags.ValidationError(f"--{error}") from None
        return True

    return validate


def _dataset_available(values):
    """The dataset is there (its metadata, a file's header or first image: nothing else is
    read), the augmentations fit its examples, and --model=cnn gets images."""
    from tfnet import augment, data  # Imported lazily: they import TensorFlow.

    fields = config_lib.TrainConfig.__dataclass_fields__
    try:
        shape = data.input_shape(values["dataset"], values["data_dir"],
                                 label_column=values.get("label_column", "label"),
                                 image_size=_convert(fields["image_size"],
                                                     values.get("image_size") or []))
    except (data.DatasetNotFoundError, data.BadDataError) as error:
        raise flags.ValidationError(f"--dataset={values['dataset']}: {error}") from None
    if values.get("model") == "cnn" and len(shape) != 3:
        raise flags.ValidationError(
            f"--model=cnn needs images (height, width, channels); --dataset={values['dataset']} "
            f"has examples of shape {shape}: use --model=mlp")
    if values["augment"]:
        try:
            augment.build(values["augment"], shape)
        except ValueError as error:
            raise flags.ValidationError(
                f"--augment={values['augment']} does not fit --dataset={values['dataset']}, "
                f"whose examples have shape {shape}: {error}") from None
    return True


def _define(field, flag_values, config_class):
    name, default, help = field.name, field.default, field.metadata["help"]
    if config_class is config_lib.TrainConfig and name == "augment":
        from tfnet import augment  # The names and their descriptions, for --helpfull.

        help = f"{help}\n{augment.describe()}"
    elif config_class is config_lib.TrainConfig and name == "optimizer":
        from tfnet import optimizers  # The names and their update rules, for --helpfull.

        help = f"{help}\n{optimizers.describe()}"
    kind = type(default) if default is not None else field.type  # None: the annotation says
    if kind is bool:
        flags.DEFINE_bool(name, default, help, flag_values=flag_values)
    elif kind is tuple:
        flags.DEFINE_list(name, [str(v) for v in default], help, flag_values=flag_values)
    elif kind is int:
        flags.DEFINE_integer(name, default, help, flag_values=flag_values)
    elif kind is float:
        flags.DEFINE_float(name, default, help, flag_values=flag_values)
    else:
        flags.DEFINE_string(name, default, help, flag_values=flag_values)
    if field.metadata.get("check") is not None:
        flags.register_validator(
            name, _validator(field, config_class), message=f"invalid --{name}",
            flag_values=flag_values,
        )


def _validator(field, config_class):
    def validate(value):
        try:
            config_lib.check(field.name, _convert(field, value), config_class)
        except ValueError as error:
            raise flags.ValidationError(f"--{error}") from None
        return True

    return validate


def _convert(field, value):
    """A parsed flag value as the field's type (lists of strings become tuples of numbers of
    the default's element type)."""
    if isinstance(field.default, tuple):
        element = field.metadata.get("element") or str
        try:
            return tuple(element(v) for v in value)
        except ValueError:
            kind = "integers" if element is int else "numbers"
            config_lib.fail(field.name, f"a comma-separated list of {kind}", ",".join(value))
    return value


def train_config_from_flags(flag_values=flags.FLAGS, **overrides):
    """Builds a validated ``TrainConfig`` from the parsed flags that exist for its fields."""
    return config_lib.validate(config_from_flags(config_lib.TrainConfig, flag_values, **overrides))


_HELP = ("--help", "-help", "-h", "-?", "--helpshort")


def run(main, flag_values=flags.FLAGS, fast_exit=False):
    """Runs a script's ``main`` with ``absl.app.run``; ``--help`` prints its usage and exits 0.

    The usage is the script's docstring and every flag it takes, with its help: the flags this
    module defined for it (the training and benchmark settings) are made key flags of the
    script, beside those it defines itself. (absl's own ``--help`` exits with status 1 and lists
    only the latter.) Python logging is at WARNING unless ``--verbosity`` is given. A
    ``tfnet.errors.TfnetError`` that ``main`` raises is one line on stderr and its exit status.
    With ``fast_exit`` the process ends as soon as ``main`` returns and the standard streams are
    flushed (``os._exit``): the interpreter's teardown of TensorFlow costs about a second, and
    everything a run writes is complete when its call returns.
    """
    script = sys.argv[0]
    for flag in flag_values.get_flags_for_module(__name__):
        flag_values.register_key_flag_for_module(script, flag)
    if any(arg in _HELP for arg in sys.argv[1:]):
        app.usage(shorthelp=True, writeto_stdout=True, exitcode=0)

    def quiet_main(argv):
        # absl logs INFO by default (TFDS' "Creating a tf.data.Dataset ..." lines, TensorFlow's
        # SavedModel writer's every file); --verbosity still sets it.
        if not flag_values["verbosity"].present:
            absl_logging.set_verbosity(absl_logging.WARNING)
        from tfnet import errors

        try:
            status = main(argv)
        except errors.TfnetError as error:  # the user's to act on: one line, its exit status
            status = errors.report(error, sys.stderr)
        if fast_exit:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status or 0)
        return status

    app.run(quiet_main)
