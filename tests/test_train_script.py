"""scripts/train.py end to end in a subprocess: TensorBoard events, flagfile, results, bad flags."""

import json
import os
import subprocess

import pytest
import tensorflow as tf
from absl import flags as absl_flags

from helpers import plugin_tags, read_scalars, run_script, script_command, script_env
from tfnet import flags as tfnet_flags


@pytest.fixture(scope="module")
def moons_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("moons")
    completed = run_script(
        "train.py", "--optimizer=keras_adam", "--epochs=12", "--log_every_steps=5", "--histograms",
        f"--model_dir={root / 'run'}", f"--export_dir={root / 'saved_models'}", "--seed=1",
    )
    return root, completed


def test_main_job_reaches_90_percent_dev_accuracy_and_says_where_things_went(moons_run):
    root, completed = moons_run
    results = json.loads((root / "run" / "results.json").read_text())
    assert results["dev_accuracy"] >= 0.90, results
    assert results["epochs"] == 12
    assert f"tensorboard --logdir {root / 'run'}" in completed.stdout
    assert f"SavedModel: {root / 'saved_models' / 'moons' / '1'}" in completed.stdout
    assert "diagnosis:" in completed.stdout and "test loss" in completed.stdout


def test_tensorboard_events_hold_epoch_and_step_scalars(moons_run):
    root, _ = moons_run
    train = read_scalars(root / "run" / "train")
    dev = read_scalars(root / "run" / "dev")
    results = json.loads((root / "run" / "results.json").read_text())
    steps_per_epoch = 13  # ceil(800 / 64)
    assert [s for s, _ in train["epoch_loss"]] == [steps_per_epoch * e for e in range(1, 13)]
    assert len(dev["epoch_accuracy"]) == 12
    assert dev["epoch_accuracy"][-1][1] == pytest.approx(results["dev_accuracy"], rel=1e-6)
    assert train["learning_rate"][0][1] == pytest.approx(0.001)  # keras_adam's default
    assert [s for s, _ in train["batch_cost"]] == list(range(5, 12 * steps_per_epoch + 1, 5))
    assert any(tag.startswith("dense_1") for tag in plugin_tags(root / "run" / "train", "histograms"))
    assert plugin_tags(root / "run", "hparams")


def test_hparams_of_a_single_run_carry_its_metrics_and_its_learning_rate(moons_run):
    from tensorboard.plugins.hparams import metadata

    root, _ = moons_run
    summaries = [(v.tag, v) for path in sorted((root / "run").glob("events.out.tfevents.*"))
                 for event in tf.compat.v1.train.summary_iterator(str(path))
                 for v in event.summary.value]
    [experiment] = [metadata.parse_experiment_plugin_data(v.metadata.plugin_data.content)
                    for tag, v in summaries if tag == "_hparams_/experiment"]
    assert {(m.name.group, m.name.tag) for m in experiment.metric_infos} == {
        (group, tag) for group in ("dev", "train") for tag in ("epoch_accuracy", "epoch_loss")}
    assert {h.name for h in experiment.hparam_infos} >= {"learning_rate", "optimizer", "hidden_units"}
    [session] = [metadata.parse_session_start_info_plugin_data(v.metadata.plugin_data.content)
                 for tag, v in summaries if tag == "_hparams_/session_start_info"]
    # No --learning_rate: the run used keras_adam's default, and says so.
    assert session.hparams["learning_rate"].number_value == pytest.approx(0.001)


def test_flagfile_reproduces_the_run(moons_run, tmp_path):
    root, _ = moons_run
    flagfile = (root / "run" / "flags.txt").read_text()
    assert "--optimizer=keras_adam" in flagfile and "--hidden_units=64,32" in flagfile
    run_script("train.py", f"--flagfile={root / 'run' / 'flags.txt'}", f"--model_dir={tmp_path / 'again'}",
               "--noexport")
    first = json.loads((root / "run" / "results.json").read_text())
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["dev_accuracy"] == first["dev_accuracy"]


BAD_FLAGS = {
    "negative_learning_rate": (["--learning_rate=-0.1"], "--learning_rate must be > 0. Received: learning_rate=-0.1"),
    "zero_learning_rate": (["--learning_rate=0"], "--learning_rate must be > 0. Received: learning_rate=0.0"),
    "zero_batch_size": (["--batch_size=0"], "--batch_size must be a positive integer. Received: batch_size=0"),
    "unknown_optimizer": (["--optimizer=adamw"], "--optimizer must be one of"),
    "unknown_dataset": (["--dataset=imagenet_typo"], "'imagenet_typo' is not a known dataset"),
    "dev_fraction_zero": (["--dev_fraction=0"], "--dev_fraction must be in (0, 1). Received: dev_fraction=0.0"),
    "dev_fraction_one": (["--dev_fraction=1"], "--dev_fraction must be in (0, 1). Received: dev_fraction=1.0"),
    "hidden_units_zero": (["--hidden_units=16,0"], "--hidden_units must be a non-empty comma-separated list of positive integers. Received: hidden_units='16,0'"),
    "hidden_units_negative": (["--hidden_units=-3"], "Received: hidden_units='-3'"),
    "hidden_units_not_integers": (["--hidden_units=a,b"], "Received: hidden_units='a,b'"),
    "zero_epochs": (["--epochs=0"], "--epochs must be a positive integer. Received: epochs=0"),
    "keep_prob_per_layer": (["--keep_prob=0.9,0.8,0.7"], "--keep_prob must be one value or one per hidden layer (2, from hidden_units=64,32). Received: keep_prob='0.9,0.8,0.7'"),
    "jit_compile_mirrored": (["--jit_compile=on", "--strategy=mirrored"], "--jit_compile must be auto or off with strategy=mirrored"),
    "tpu_without_address": (["--strategy=tpu"], "--tpu must be given with strategy=tpu"),
    "num_examples_for_tfds": (["--dataset=mnist_t10k", "--data_dir=<shared_tfds>", "--num_examples=300"], "--num_examples must be 0 for the TFDS dataset mnist_t10k"),
    "unknown_jit_compile": (["--jit_compile=yes"], "--jit_compile must be one of auto, on, off. Received: jit_compile='yes'"),
    "negative_steps_per_loop": (["--steps_per_loop=-1"], "--steps_per_loop must be a non-negative integer. Received: steps_per_loop=-1"),
    "zero_eval_every_epochs": (["--eval_every_epochs=0"], "--eval_every_epochs must be a positive integer. Received: eval_every_epochs=0"),
    "unknown_augmentation": (["--augment=crop,blur"], "--augment must be a comma-separated list of distinct augmentations among flip, crop, "),
    "augmentation_of_points": (["--augment=crop"], "--augment=crop does not fit --dataset=moons, whose examples have shape (2,): `input_shape` must be (height, width, channels)"),
    "saturation_of_grey_images": (["--dataset=mnist_t10k", "--data_dir=<shared_tfds>", "--augment=saturation"], "--augment=saturation does not fit --dataset=mnist_t10k, whose examples have shape (28, 28, 1): `saturation` needs RGB images (3 channels)"),
}


@pytest.mark.parametrize("case", sorted(BAD_FLAGS))
def test_bad_flag_is_refused_at_parse_time_naming_flag_and_value(case, request):
    # The parsing scripts/train.py does (its flags, validators and multi-flag validators).
    values = absl_flags.FlagValues()
    tfnet_flags.define_train_flags(values)
    args, message = BAD_FLAGS[case]
    if any("<shared_tfds>" in arg for arg in args):  # mnist_t10k: ../shared's, or its stand-in
        tfds_dir = request.getfixturevalue("shared_tfds")
        args = [arg.replace("<shared_tfds>", tfds_dir) for arg in args]
    with pytest.raises(absl_flags.IllegalFlagValueError) as error:
        values(["train.py", *args])
    assert message in str(error.value)


@pytest.fixture(scope="module")
def bad_flag_runs(tmp_path_factory):
    """Runs scripts/train.py with a bad flag and with a bad pair of flags, at once.

    TF_CPP_MIN_LOG_LEVEL is left unset, as in a user's shell, so stderr is what a user sees.
    """
    root = tmp_path_factory.mktemp("bad_flags")
    processes = {}
    for case in ("zero_learning_rate", "keep_prob_per_layer"):
        args = BAD_FLAGS[case][0]
        model_dir = root / case
        processes[case] = (model_dir, subprocess.Popen(
            script_command("train.py", *args, f"--model_dir={model_dir}", f"--export_dir={root / 'exports'}"),
            env=script_env(tf_cpp_min_log_level=None), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, cwd=root,
        ))
    outcomes = {}
    for case, (model_dir, process) in processes.items():
        stdout, stderr = process.communicate(timeout=300)
        outcomes[case] = (process.returncode, stdout, stderr, model_dir)
    return root, outcomes


@pytest.mark.parametrize("case", ["zero_learning_rate", "keep_prob_per_layer"])
def test_a_bad_flag_stops_the_script_with_one_line_before_any_work(bad_flag_runs, case):
    root, outcomes = bad_flag_runs
    returncode, stdout, stderr, model_dir = outcomes[case]
    assert returncode == 1
    # One line naming the flag, then absl's pointer to the help; none of TensorFlow's C++
    # start-up lines (written before absl logging is initialised, whatever the log level).
    error, trailer = stderr.splitlines()
    assert error.startswith("FATAL Flags parsing error: ") and BAD_FLAGS[case][1] in error
    assert trailer == "Pass --helpshort or --helpfull to see help on flags."
    assert not model_dir.exists() and not (root / "exports").exists() and not (root / "runs").exists()
    assert "epoch" not in stdout


@pytest.mark.parametrize("script", ["gradcheck.py", "tune.py"])
def test_other_scripts_defining_the_train_flags_print_one_line_for_a_bad_flag(script, tmp_path,
                                                                             repo_root):
    space = os.path.join(repo_root, "examples", "search_space.json")
    search_space = [f"--search_space={space}"] if script == "tune.py" else []
    completed = run_script(script, "--learning_rate=0", *search_space, check=False, cwd=tmp_path,
                           env=script_env(tf_cpp_min_log_level=None))
    assert completed.returncode == 1
    assert completed.stderr.splitlines() == [
        "FATAL Flags parsing error: flag --learning_rate=0.0: --learning_rate must be > 0. "
        "Received: learning_rate=0.0",
        "Pass --helpshort or --helpfull to see help on flags.",
    ]
    assert os.listdir(tmp_path) == []


# As this machine's TensorFlow 2.21 writes them at import, before absl logging is initialised.
_STARTUP = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    b"I0000 00:00:1796154217.928416   13597 port.cc:153] oneDNN custom operations are on.\n",
    b"I0000 00:00:1796154218.009191   13597 cpu_feature_guard.cc:227] This TensorFlow binary is "
    b"optimized to use available CPU instructions in performance-critical operations.\n",
    b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow.\n",
    b"W0000 00:00:1796154218.100000   13597 computation_placer.cc:177] computation placer already "
    b"registered.\n",
    b"E0000 00:00:1796154218.200000   13597 cuda_dnn.cc:8579] Unable to register cuDNN factory\n",
    b"/site-packages/x.py:3: DeprecationWarning: old\n",
    b"  import old\n",
]


@pytest.mark.parametrize("level, kept", [
    (0, list(range(8))),  # everything
    (1, [4, 5, 6, 7]),  # INFO (with its continuation line) and absl's notice dropped
    (2, [5, 6, 7]),
    (3, [6, 7]),  # Python's own warning is kept whatever the level
])
def test_tensorflow_start_up_lines_are_filtered_by_level(level, kept):
    assert tfnet_flags._kept_lines(_STARTUP, level) == [_STARTUP[i] for i in kept]
