"""One path from a ``TrainConfig`` to the objects a run is made of: data, model, optimiser.

The trainer, the gradient checker's training model, ``tfnet.compare``, the study and the
benchmarks all build through these functions, so a setting means the same everywhere (the
data a model is normalised on, the optimiser's defaults):

    splits = build.data(config)                       # tfnet.data.Splits
    prepared = build.prepared_data(config, splits)    # placed, checked, with statistics
    model = build.model(config, prepared.info)        # mlp, cnn or the user's factory
    optimizer = build.optimizer(config, steps_per_epoch)
"""

import importlib
import os
import sys

from tfnet import data as data_lib
from tfnet import model as model_lib
from tfnet import optimizers, schedules


def memory_budget(config):
    """Bytes of float32 features that may be held in memory (``memory_budget_mb``, or the
    automatic budget when it is 0)."""
    return int(config.memory_budget_mb * 2**20) or data_lib.preparation.automatic_budget()


def cache_dir(config):
    """Where copies of streamed data go (``cache_dir``, default ``~/.cache/tfnet``)."""
    return os.path.expanduser(config.cache_dir or data_lib.sources.DEFAULT_CACHE_DIR)


def data(config):
    """The dataset ``config`` names, as ``tfnet.data.Splits`` (nothing is read but what naming
    its splits takes: a CSV is parsed, TFDS metadata read)."""
    return data_lib.load(config.dataset, config.data_dir, config.dev_fraction,
                         num_examples=config.num_examples, label_column=config.label_column,
                         image_size=config.image_size, memory_budget=memory_budget(config),
                         cache_dir=cache_dir(config))


def prepared_data(config, splits):
    """``splits`` placed in memory or streamed under the config's budget, checked, with the
    training split's statistics (``tfnet.data.prepare``)."""
    return data_lib.prepare(splits, memory_budget(config), cache_dir(config))


def model(config, info):
    """The classifier ``config.model`` names for data described by ``info`` (with its
    statistics), checked to take its examples and output C logits."""
    if config.model in ("mlp", "cnn"):
        common = dict(activation=config.activation, initializer=config.initializer,
                      batch_norm=config.batch_norm, bn_momentum=config.bn_momentum,
                      bn_bias_correction=config.bn_bias_correction,
                      bn_synchronized=config.bn_synchronized, keep_prob=config.keep_prob,
                      l2=config.l2, seed=config.seed)
        if config.model == "mlp":
            built = model_lib.build_model(info.input_shape, info.num_classes, config.hidden_units,
                                          info.mean, info.variance, **common)
        else:
            built = model_lib.build_cnn(info.input_shape, info.num_classes, config.conv_filters,
                                        config.hidden_units, info.mean, info.variance,
                                        kernel_size=config.kernel_size, **common)
    else:
        built = user_model(load_factory(config.model), info)
    model_lib.check_classifier(built, info.input_shape, info.num_classes)
    return built


def load_factory(spec):
    """The function named ``package.module:function`` (the working directory importable too).

    Raises:
      ModelError: the module does not import or has no such function.
    """
    module_name, _, function_name = spec.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 — the user's module: any import failure is theirs
        raise model_lib.ModelError(
            f"model must be mlp, cnn or package.module:function, a module that imports. "
            f"Received: model={spec!r} ({type(error).__name__}: {error})") from None
    factory = getattr(module, function_name, None)
    if not callable(factory):
        raise model_lib.ModelError(f"model must name a function of {module_name}. Received: "
                                   f"model={spec!r} ({module_name} has no function {function_name})")
    return factory


def user_model(model_or_factory, info):
    """A user's model: a ``keras.Model``, or a factory ``model_fn(info)`` called (inside the
    current strategy's scope, where the caller enters it) to build one."""
    import keras

    if isinstance(model_or_factory, keras.Model):
        return model_or_factory
    if not callable(model_or_factory):
        raise model_lib.ModelError(f"model must be a keras.Model or a function model_fn(info) "
                                   f"returning one. Received: {type(model_or_factory).__name__}")
    try:
        built = model_or_factory(info)
    except model_lib.ModelError:
        raise
    except Exception as error:  # noqa: BLE001 — the user's factory
        raise model_lib.ModelError(
            f"model_fn(info) must return a keras.Model. Calling "
            f"{getattr(model_or_factory, '__name__', model_or_factory)!r} raised "
            f"{type(error).__name__}: {error}") from None
    if not isinstance(built, keras.Model):
        raise model_lib.ModelError(
            f"model_fn(info) must return a keras.Model. Received: {type(built).__name__} from "
            f"{getattr(model_or_factory, '__name__', model_or_factory)!r}")
    return built


def learning_rate(config, steps_per_epoch):
    """α: a float, or the schedule ``config.lr_schedule`` with the decay arguments it takes;
    α₀ is ``config.learning_rate``, or the optimiser's default learning rate when it is None."""
    decay = {name: getattr(config, name) for name in schedules.SCHEDULE_ARGUMENTS[config.lr_schedule]}
    if not decay.get("decay_interval", 1):
        del decay["decay_interval"]  # 0: inverse_time decays every step; step must be told.
    return schedules.get(config.lr_schedule, config.effective_learning_rate, steps_per_epoch,
                         **decay)


def optimizer(config, steps_per_epoch):
    """The optimiser ``config.optimizer`` with the hyperparameters it takes: those the config
    sets, the optimiser's own defaults for those it leaves at None."""
    accepted = optimizers.RECORDS[config.optimizer].hyperparameters
    given = {name: getattr(config, name) for name in accepted if getattr(config, name) is not None}
    return optimizers.get(config.optimizer, learning_rate(config, steps_per_epoch), **given)
