"""The training configuration: one frozen dataclass whose fields are ``scripts/train.py``'s flags.

Each field carries its help text and, where a value can be wrong, a check that raises
``ValueError`` naming the field, the value received and what is allowed. ``tfnet.flags`` turns
the fields into absl flags (so the flags, their help and their validation are written once,
here), and ``validate`` runs every check on a config built in code.
"""

import dataclasses
import hashlib
import json
import os

from tfnet import _checks as checks


def setting(default, help, check=None, *, resumable=False, finish=False, element=None):
    """A config field: its default, its help text (the flag's help), its check (a function
    ``check(name, value)`` that raises ``ValueError``, see ``fail``, for a value not allowed) and
    its policy, as field metadata:

    - ``resumable``: the field may change when a run resumes (more epochs, other outputs,
      logging, checkpointing, early stopping, strategy): it is not part of the run's identity
      (``TrainConfig.digest``, ``tfnet.training.run_dir``);
    - ``finish``: the field decides how a trained run is finished (evaluated, exported): a
      finished run rerun with another value is finished again, not only reported;
    - ``element``: the type of a tuple field's values (default: that of the default's first).
    """
    if element is None and isinstance(default, tuple) and default:
        element = type(default[0])
    return dataclasses.field(default=default, metadata={
        "help": help, "check": check, "resumable": resumable, "finish": finish,
        "element": element})


_field = setting


fail = checks.fail
# The rules, from the one vocabulary, as the other configs (tfnet.compare, tfnet.study, the
# benchmarks) name them.
positive, non_negative = checks.check_positive, checks.check_non_negative
positive_int, non_negative_int = checks.check_positive_integer, checks.check_non_negative_integer
positive_ints, choice, names_among = (checks.check_positive_integers, checks.choice,
                                      checks.names_among)


def _keep_prob(name, value):
    if not value or any(not 0.0 < p <= 1.0 for p in value):
        fail(name, "one value or one per hidden layer, each in (0, 1]", ",".join(map(str, value)))


def _optimizer(name, value):
    from tfnet import optimizers  # Imported lazily: the registry imports Keras.

    checks.choice(*optimizers.NAMES)(name, value)


def _augment_names(name, value):
    from tfnet import augment  # Imported lazily: it imports TensorFlow.

    names = [n.strip() for n in value.split(",") if n.strip()]
    if any(n not in augment.NAMES for n in names) or len(set(names)) != len(names):
        fail(name, f"a comma-separated list of distinct augmentations among "
             f"{', '.join(augment.NAMES)}", value)


def _dataset(name, value):
    if not value or value != value.strip():
        fail(name, "an embedded dataset (moons, circles, flower), a TFDS dataset name or the path "
             "of a .npz file, a .csv file or a folder of images", value)


def _model(name, value):
    if value in ("mlp", "cnn"):
        return
    module, _, function = value.partition(":")
    if not (module and function and all(part.isidentifier() for part in module.split("."))
            and function.isidentifier()):
        fail(name, "mlp, cnn or a factory package.module:function", value)


def _seed(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        fail(name, "an integer in [0, 2**32)", value)


def _image_size(name, value):
    if value and (len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0
                                        for v in value)):
        fail(name, "empty or two positive integers, height,width", ",".join(map(str, value)))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; defaults give the Quickstart's main job."""

    # Data.
    dataset: str = _field(
        "moons",
        "Dataset: an embedded 2-D set that needs no download (moons, circles, flower), a TFDS "
        "image-classification dataset prepared in --data_dir (mnist, fashion_mnist, cifar10, "
        "mnist_t10k, ...), or a path: a .npz file (x_train, y_train and optionally x_test, "
        "y_test, as keras.datasets ships them), a .csv file with a header (--label_column), or a "
        "folder of images with one subfolder per class (optionally under train/ and test/).",
        _dataset,
    )
    data_dir: str = _field(
        None, "TFDS data directory holding the prepared dataset (default: ~/tensorflow_datasets). "
        "Nothing is downloaded."
    )
    label_column: str = _field(
        "label", "CSV datasets: the column holding the class (integers 0..C-1, or names, "
        "numbered in sorted order); every other column is a numeric feature."
    )
    image_size: tuple = _field(
        (), "Image-folder datasets: resize every image to height,width (bilinear); empty: the "
        "images must all have one size.", _image_size, element=int,
    )
    dev_fraction: float = _field(
        0.2, "Fraction of the training split held out as the dev set, in (0, 1); a dataset "
        "without a test split also holds out this fraction as its test set.", checks.check_open_unit
    )
    num_examples: int = _field(
        0, "Embedded sets only: examples generated for train + dev (0: the set's default, 1000 "
        "for moons and circles, 400 for flower); the test set keeps its size.",
        checks.check_non_negative_integer,
    )
    memory_budget_mb: float = _field(
        0.0, "Splits are held in memory, train first, while their features (as float32) fit in "
        "this many MB; a split that does not fit is streamed from disk during training and "
        "evaluation. 0: a quarter of the machine's physical memory.", checks.check_non_negative,
        resumable=True,
    )
    cache_dir: str = _field(
        None, "Where a streamed split that cannot be read by position (a CSV, a TFDS dataset) is "
        "written once as arrays (default: ~/.cache/tfnet).", resumable=True,
    )
    augment: str = _field(
        "", "Comma-separated augmentations of the training split (never dev or test), e.g. "
        "crop,rotate; empty for none. Images only; saturation needs RGB.", _augment_names,
    )
    # Model.
    model: str = _field(
        "mlp", "The network: mlp ([Dense -> BatchNorm -> activation -> dropout] per "
        "--hidden_units -> logits), cnn ([Conv --kernel_size -> BatchNorm over channels -> "
        "activation -> 2x2 max pooling] per --conv_filters, then the mlp's hidden layers -> "
        "logits), or package.module:function, a factory model_fn(info) -> keras.Model whose "
        "outputs are logits (info: tfnet.data.DatasetInfo, with the training split's "
        "normalisation statistics); the module is imported from the working directory too.",
        _model,
    )
    conv_filters: tuple = _field(
        (32, 64), "cnn: filters of each convolution block, comma-separated.",
        checks.check_positive_integers
    )
    kernel_size: int = _field(3, "cnn: height and width of every convolution kernel.",
                              checks.check_positive_integer)
    hidden_units: tuple = _field(
        (64, 32), "Units of each hidden layer, comma-separated (e.g. 64,32).",
        checks.check_positive_integers
    )
    activation: str = _field(
        "relu", "Hidden-layer activation.", checks.choice("relu", "tanh", "sigmoid", "elu", "gelu")
    )
    initializer: str = _field(
        "he", "Weight initialisation: he (randn*sqrt(2/n_in), for ReLU), xavier "
        "(randn*sqrt(1/n_in), for tanh), zeros or random_large (randn*10; demonstrations of "
        "failure).", checks.choice("he", "xavier", "zeros", "random_large"),
    )
    batch_norm: bool = _field(
        False, "BatchNorm after each hidden Dense layer (which then has no bias), before the "
        "activation."
    )
    bn_momentum: float = _field(
        0.99, "Momentum of BatchNorm's running averages, in [0, 1).", checks.check_decay
    )
    bn_bias_correction: bool = _field(
        False, "Divide BatchNorm's running averages by 1 - momentum^t (they start at 0), so "
        "inference is right after a few steps."
    )
    bn_synchronized: bool = _field(
        True, "All-reduce BatchNorm's batch statistics across tf.distribute replicas, so that "
        "R replicas normalise like one device on the global batch."
    )
    keep_prob: tuple = _field(
        (1.0,), "Inverted-dropout keep probability in (0, 1] after the hidden layers: one value "
        "for all or one per hidden layer (e.g. 0.8,0.9); 1 means no dropout.", _keep_prob,
    )
    l2: float = _field(
        0.0, "L2 strength lambda: adds (lambda/2m) * sum ||W||_F^2 over the kernels to the cost.",
        checks.check_non_negative,
    )
    # Optimisation.
    optimizer: str = _field(
        "adam", "Optimiser: ours (the course's equations) or a Keras built-in configured from "
        "the same hyperparameters (tfnet.optimizers.NAMES).", _optimizer,
    )
    learning_rate: float = _field(
        None, "Learning rate alpha, > 0. Default: the optimiser's, as Keras' (0.01 for gd, "
        "momentum and their twins; 0.001 for rmsprop, adam and theirs).",
        checks.or_none(checks.check_positive),
    )
    beta: float = _field(
        None, "Momentum's beta, in [0, 1). Default: the optimiser's own (0.9).",
        checks.or_none(checks.check_decay))
    beta1: float = _field(
        None, "Adam's beta1 (first moment), in [0, 1). Default: the optimiser's own (0.9).",
        checks.or_none(checks.check_decay))
    beta2: float = _field(
        None, "RMSprop's and Adam's beta2 (second moment), in [0, 1). Default: the optimiser's "
        "own (0.9 for rmsprop and keras_rmsprop, 0.999 for adam and keras_adam).",
        checks.or_none(checks.check_decay))
    epsilon: float = _field(
        None, "Epsilon of RMSprop and Adam, >= 0. Default: the optimiser's own (1e-8).",
        checks.or_none(checks.check_non_negative))
    bias_correction: bool = _field(
        False, "Momentum: step along v / (1 - beta^t) instead of v."
    )
    epsilon_inside_sqrt: bool = _field(
        False, "RMSprop: divide by sqrt(s + epsilon) (Keras' form) instead of sqrt(s) + epsilon."
    )
    epsilon_hat: bool = _field(
        False, "Adam: Keras' 'epsilon hat' form, epsilon added to sqrt(s) before bias "
        "correction (equal to keras_adam)."
    )
    lr_schedule: str = _field(
        "constant", "Learning-rate decay (docs/methods.md §8), with e = step / steps_per_epoch: "
        "constant; inverse_time a0/(1 + decay_rate*e), or on a fixed --decay_interval "
        "a0/(1 + decay_rate*floor(e/interval)); exponential decay_base^e * a0; inverse_sqrt "
        "decay_k * a0/sqrt(1 + e) (the course's k/sqrt(epoch) with epochs counted from 1); step: "
        "times decay_factor every --decay_interval epochs.",
        checks.choice("constant", "inverse_time", "exponential", "inverse_sqrt", "step"),
    )
    decay_rate: float = _field(1.0, "inverse_time's decay rate, >= 0.", checks.check_non_negative)
    decay_interval: float = _field(
        0.0, "Epochs between decays for inverse_time (0: every step) and step (required).",
        checks.check_non_negative,
    )
    decay_base: float = _field(
        0.95, "exponential's base per epoch, in (0, 1] (1: no decay).", checks.check_factor
    )
    decay_k: float = _field(1.0, "inverse_sqrt's k, > 0.", checks.check_positive)
    decay_factor: float = _field(
        0.5, "step's factor per interval, in (0, 1] (1: no decay).", checks.check_factor
    )
    batch_size: int = _field(64, "Mini-batch size b (the global batch).",
                         checks.check_positive_integer)
    epochs: int = _field(30, "Number of passes over the training split.",
                         checks.check_positive_integer, resumable=True)
    # Run.
    seed: int = _field(
        0, "Seed of the weights' initialisation, dropout and the data order, in [0, 2**32).", _seed)
    deterministic: bool = _field(
        False, "Enable TensorFlow op determinism: with the same --seed, bit-identical weights."
    )
    model_dir: str = _field(
        None, "Run directory for TensorBoard logs, checkpoints, the flagfile and results (default: "
        "runs/<dataset>-<optimizer>-<digest of the flags that change the result>: other flags, "
        "another directory; the same command, the same run, resumed).", resumable=True
    )
    export_dir: str = _field(
        "saved_models", "Where SavedModels go, as <export_dir>/<export_name>/<version>/.",
            resumable=True, finish=True
    )
    export_name: str = _field(None, "Name of the exported model (default: the dataset's name).",
        resumable=True, finish=True)
    export: bool = _field(True, "Export a SavedModel at the end of training.", resumable=True,
        finish=True)
    log_every_steps: int = _field(
        10, "Write the mini-batch cost to TensorBoard every this many steps.",
        checks.check_positive_integer, resumable=True
    )
    histograms: bool = _field(
        False, "Write weight histograms to TensorBoard at every evaluated epoch.", resumable=True
    )
    train_eval_examples: int = _field(
        0, "Examples of the training split evaluated after each evaluated epoch (its figures in "
        "the history and TensorBoard): a fixed random subset, the same every epoch; 0: as many "
        "as the dev split has, so that the two errors the diagnosis compares are as precise. The "
        "final figures and the diagnosis use the whole split.", checks.check_non_negative_integer,
        resumable=True,
    )
    eval_every_epochs: int = _field(
        1, "Evaluate the training and dev splits (and log them, and decide early stopping) every "
        "this many epochs; the last epoch is always evaluated.", checks.check_positive_integer,
            resumable=True,
    )
    steps_per_loop: int = _field(
        0, "Training steps per compiled call (a tf.while_loop): 0 (automatic) runs up to the next "
        "evaluation, checkpoint or the end, bounded so that a call lasts about a second; 1 is a "
        "step per call. Any value gives the same results.", checks.check_non_negative_integer,
            resumable=True,
    )
    jit_compile: str = _field(
        "auto", "Compile the training loop with XLA: auto (on when the run's steps save more than "
        "the ~2 s of compiling, by tfnet.training.xla's model: steps x min(0.2 ms + 6 ns per "
        "parameter, 2.5 ms) > 2 s; never under several replicas, for convolution or pooling "
        "layers, or with an augmentation XLA has no kernel for), on, off. XLA changes the numbers in the last bits (and the dropout "
        "and augmentation draws); a run is bit-identical to itself with the same setting.",
        checks.choice("auto", "on", "off"), resumable=True,
    )
    # Distribution.
    strategy: str = _field(
        "default", "tf.distribute strategy: default (one device), mirrored (all local GPUs, or "
        "--cpu_devices logical CPUs), multi_worker (the machines in TF_CONFIG), tpu (--tpu).",
        checks.choice("default", "mirrored", "multi_worker", "tpu"), resumable=True,
    )
    tpu: str = _field(None,
        "TPU name or grpc:// address for --strategy=tpu ('' or local on a TPU VM).", resumable=True)
    cpu_devices: int = _field(
        0, "Split the CPU into this many logical devices (for --strategy=mirrored without a "
        "GPU); 0 leaves it whole.", checks.check_non_negative_integer, resumable=True,
    )
    # Reliability.
    checkpoint_every_steps: int = _field(
        0, "Write a checkpoint every this many steps; 0: by time only (--checkpoint_every_seconds)."
        " A checkpoint is always written at the end and on SIGINT / SIGTERM.",
        checks.check_non_negative_integer, resumable=True,
    )
    checkpoint_every_seconds: float = _field(
        60.0, "Write a checkpoint when this many seconds have passed since the last one (checked "
        "after each compiled loop call, about every second); 0: by steps only.",
        checks.check_non_negative, resumable=True,
    )
    keep_checkpoints: int = _field(3, "How many recent checkpoints to keep.",
                         checks.check_positive_integer, resumable=True)
    resume: bool = _field(
        True, "Resume from the checkpoint in --model_dir when there is one. --noresume starts "
        "over, and refuses a --model_dir that holds a run unless --overwrite.", resumable=True
    )
    overwrite: bool = _field(
        False, "With --noresume, delete the run already in --model_dir and start over.",
            resumable=True
    )
    on_nonfinite: str = _field(
        "stop", "What a non-finite cost or gradient does: stop (keep the last good checkpoint "
        "and exit non-zero) or skip_step (drop that update and go on).",
        checks.choice("stop", "skip_step"), resumable=True,
    )
    early_stopping_patience: int = _field(
        0, "Stop after this many epochs without dev-accuracy improvement and export the best "
        "weights; 0 turns early stopping off.", checks.check_non_negative_integer, resumable=True,
            finish=True,
    )
    early_stopping_min_delta: float = _field(
        0.0, "Smallest dev-accuracy increase that counts as an improvement.",
        checks.check_non_negative, resumable=True, finish=True
    )
    evaluate_test: bool = _field(
        True, "Evaluate the test split at the end. Runs that choose between settings (a search, "
        "the optimiser study's tuning) leave it off: the test split is for the chosen ones only.",
            resumable=True, finish=True
    )
    best_error: float = _field(
        0.0, "Best achievable error rate (human or Bayes) in [0, 1), the reference of the "
        "bias/variance diagnosis printed at the end. The embedded sets are noisy: a few percent.",
        checks.check_decay, resumable=True, finish=True,
    )

    @property
    def run_dir(self):
        """``model_dir``, or ``runs/<dataset>-<optimizer>-<digest>``: the digest is that of every
        field that changes the result (not the resumable ones), so a command with other such
        flags never lands in another run's directory, while the same command run again (or with
        more epochs) resumes its own."""
        return self.model_dir or os.path.join(
            "runs", f"{self.dataset_name}-{self.optimizer}-{self.digest}")

    @property
    def dataset_name(self):
        """The dataset's short name: ``dataset``, or the base name of a path without its
        extension (``data/iris.csv`` gives ``iris``)."""
        if os.sep in self.dataset or "/" in self.dataset or "." in self.dataset:
            base = os.path.basename(os.path.normpath(self.dataset))
            return os.path.splitext(base)[0] or "data"
        return self.dataset

    @property
    def digest(self):
        """8 hex digits naming the fields that change the result, each at its effective value
        (``effective``), so that naming a default changes nothing."""
        values = {field.name: self.effective(field.name) for field in dataclasses.fields(self)
                  if not field.metadata["resumable"]}
        text = json.dumps(values, sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def effective(self, name):
        """The value a run uses for field ``name``: the field's, or for ``learning_rate`` and the
        optimiser's hyperparameters left at None, the optimiser's own default (None for a
        hyperparameter the optimiser does not take)."""
        value = getattr(self, name)
        if value is not None or name not in OPTIMIZER_DEFAULTED:
            return value
        from tfnet import optimizers  # Imported lazily: the registry imports Keras.

        record = optimizers.RECORDS[self.optimizer]
        if name == "learning_rate":
            return record.default_learning_rate
        return record.defaults.get(name)

    @property
    def effective_learning_rate(self):
        """α: ``learning_rate``, or the optimiser's default learning rate when it is None."""
        return self.effective("learning_rate")

    @property
    def model_name(self):
        return self.export_name or self.dataset_name

    def to_flags(self):
        """The config as flagfile lines (``--name=value``) that ``scripts/train.py`` reads back."""
        lines = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            if isinstance(value, bool):
                lines.append(f"--{'' if value else 'no'}{field.name}")
            elif isinstance(value, tuple):
                lines.append(f"--{field.name}={','.join(map(str, value))}")
            else:
                lines.append(f"--{field.name}={value}")
        return "\n".join(lines) + "\n"

    def hparams(self):
        """The config as a TensorBoard HParams mapping (bool, int, float or str values), with
        the learning rate and hyperparameters the run uses."""
        values = {}
        for field in dataclasses.fields(self):
            value = self.effective(field.name)
            if isinstance(value, tuple):
                value = ",".join(map(str, value))
            values[field.name] = "" if value is None else value
        return values


def shared(name, default=dataclasses.MISSING, help=None):
    """A field of another config with ``TrainConfig``'s field ``name``'s help, check and policy
    (its default too unless given), so that a setting that means the same is written once."""
    field = TrainConfig.__dataclass_fields__[name]
    metadata = dict(field.metadata, help=help or field.metadata["help"])
    value = field.default if default is dataclasses.MISSING else default
    return dataclasses.field(default=value, metadata=metadata)


# The fields whose None means "the optimiser's own default" (TrainConfig.effective).
OPTIMIZER_DEFAULTED = frozenset({"learning_rate", "beta", "beta1", "beta2", "epsilon"})


def fields_with(config_class, policy):
    """The names of ``config_class``'s fields whose metadata sets ``policy`` ("resumable" or
    "finish")."""
    return frozenset(f.name for f in dataclasses.fields(config_class) if f.metadata.get(policy))


RESUMABLE_FIELDS = fields_with(TrainConfig, "resumable")
FINISH_FIELDS = fields_with(TrainConfig, "finish")


def check(name, value, config_class=TrainConfig):
    """Runs the check of field ``name`` of ``config_class`` on ``value``; raises ValueError when
    it is invalid."""
    checker = config_class.__dataclass_fields__[name].metadata.get("check")
    if checker is not None:
        checker(name, value)


def check_fields(config):
    """Runs the check of every field of a config made of ``setting``s; returns the config."""
    for field in dataclasses.fields(config):
        check(field.name, getattr(config, field.name), type(config))
    return config


def _decay_interval_given(values):
    # 0 means "every step" for inverse_time only; step decay has no such form, and without this
    # check the schedule's own default (10 epochs) would silently stand in for it.
    if values["lr_schedule"] == "step" and values["decay_interval"] == 0:
        fail("decay_interval", "> 0 with lr_schedule=step (the epochs between its decays)",
             values["decay_interval"])


def _keep_prob_per_layer(values):
    keep_prob, hidden_units = values["keep_prob"], values["hidden_units"]
    if len(keep_prob) not in (1, len(hidden_units)):
        fail("keep_prob", f"one value or one per hidden layer ({len(hidden_units)}, from "
             f"hidden_units={','.join(map(str, hidden_units))})", ",".join(map(str, keep_prob)))


def _jit_compile_possible(values):
    if values["jit_compile"] != "on":
        return
    if values["strategy"] != "default":
        fail("jit_compile", "auto or off with strategy="
             f"{values['strategy']} (XLA compiles one device's loop)", values["jit_compile"])
    from tfnet import augment  # Imported lazily: it imports TensorFlow.

    if values["augment"] and not augment.compiles_with_xla(values["augment"]):
        fail("jit_compile", f"auto or off with augment={values['augment']} (rotate and zoom "
             "resample with an op that XLA cannot compile)", values["jit_compile"])


def _num_examples_embedded(values):
    from tfnet import data  # Imported lazily: it imports TensorFlow.

    if values["num_examples"] and values["dataset"] not in data.EMBEDDED_DATASETS:
        fail("num_examples", f"0 for the TFDS dataset {values['dataset']} (it sizes the embedded "
             "sets only)", values["num_examples"])
    if values["num_examples"] == 1:
        fail("num_examples", "0 or at least 2", values["num_examples"])


def _tpu_named(values):
    if values["strategy"] == "tpu" and values["tpu"] is None:
        fail("tpu", "given with strategy=tpu: a TPU name, a grpc:// address, or local on a TPU VM",
             values["tpu"])


# Checks of several fields at once: (the fields, the check of their values). Each becomes one
# multi-flag validator of the scripts (tfnet.flags), and validate() runs them on a config.
CROSS_CHECKS = (
    (("lr_schedule", "decay_interval"), _decay_interval_given),
    (("keep_prob", "hidden_units"), _keep_prob_per_layer),
    (("jit_compile", "strategy", "augment"), _jit_compile_possible),
    (("strategy", "tpu"), _tpu_named),
    (("num_examples", "dataset"), _num_examples_embedded),
)


def validate(config):
    """Runs every field's check on ``config``, then the checks that involve several fields;
    raises ValueError on the first invalid field."""
    check_fields(config)
    for names, cross_check in CROSS_CHECKS:
        cross_check({name: getattr(config, name) for name in names})
    return config
