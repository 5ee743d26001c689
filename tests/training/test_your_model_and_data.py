"""Every guarantee of the engine for a model and data it has never seen: a user's functional CNN
on a folder of images, and a user's subclassed model on a CSV — through the Python API and
through scripts/train.py; held in memory and streamed from disk."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import user_project
from helpers import train_config
from helpers import assert_same_final_state, latest_checkpoint_number
from helpers import REPO_ROOT, plugin_tags, read_scalars, run_forked, run_script, script_command
from helpers import script_env
from tfnet import data, training
from tfnet.training import run_dir

TINY_BUDGET = 0.001  # MB: nothing fits, every split is streamed from disk


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """(directory, image folder, CSV) of the user's project."""
    directory = tmp_path_factory.mktemp("project")
    images, table = user_project.write(str(directory))
    return directory, images, table


RUN = dict(epochs=3, batch_size=16, seed=7, deterministic=True, jit_compile="off",
           learning_rate=0.01)


def _weights(result):
    """The model's weights in order (a user's layers are auto-named afresh by each build)."""
    return [np.asarray(w) for w in result.model.weights]


def _assert_same_weights(first, second):
    a, b = _weights(first), _weights(second)
    assert len(a) == len(b)
    for index, (x, y) in enumerate(zip(a, b)):
        np.testing.assert_array_equal(x, y, err_msg=first.model.weights[index].path)


def test_a_users_cnn_trains_the_same_for_any_k_from_memory_or_streamed(project, tmp_path):
    _, images, _ = project
    splits = data.load(images, dev_fraction=0.25)

    def run(name, **overrides):
        return training.train(train_config(tmp_path / name, RUN, **overrides), model=user_project.small_cnn,
                              data=splits, verbose=0)

    one_step = run("memory_k1", steps_per_loop=1)
    many = run("memory_auto")
    streamed = run("streamed_k3", steps_per_loop=3, memory_budget_mb=TINY_BUDGET)
    _assert_same_weights(one_step, many)
    _assert_same_weights(one_step, streamed)  # the same mini-batches, in the same order
    # Evaluated in chunks read from disk, the sums may differ in the last bit, no more.
    for a, b in zip(one_step.history, streamed.history, strict=True):
        assert {k: pytest.approx(v, rel=1e-12) for k, v in a.items() if k != "seconds"} == {
            k: v for k, v in b.items() if k != "seconds"}
    assert one_step.history[-1]["dev_accuracy"] > 0.8  # it learnt the shapes (chance: 1/3)
    # Compiled by XLA: the streamed loop compiles each step, and K still changes nothing. (XLA
    # has no deterministic MaxPool gradient: op determinism off, XLA on the CPU is exact anyway.)
    xla = [run(f"xla_k{k}", steps_per_loop=k, jit_compile="on", memory_budget_mb=TINY_BUDGET,
               deterministic=False) for k in (1, 0)]
    _assert_same_weights(*xla)
    # With op determinism on, "on" says in one line that XLA cannot; "auto" does not compile a
    # convolutional model (tfnet.training.xla) and trains as "off" does.
    with pytest.raises(training.XlaUnavailableError, match=r"jit_compile must be off or auto for "
                       r"this run: XLA cannot compile its training step \(.*MaxPool"):
        run("xla_deterministic", jit_compile="on")
    fallback = training.train(train_config(tmp_path / "auto", RUN, jit_compile="auto", steps_per_loop=1),
                              model=user_project.small_cnn, data=splits, verbose=0)
    _assert_same_weights(one_step, fallback)


def test_the_users_regulariser_is_part_of_the_cost_and_of_its_gradient(project, tmp_path):
    from tfnet.training import step as step_lib

    _, images, _ = project
    splits = data.load(images, dev_fraction=0.25)
    info = data.prepare(splits, 0, str(tmp_path)).info
    model = user_project.small_cnn(info)
    x, y = (t[:8] for t in data.in_memory(splits.train))
    cost = step_lib.replica_cost(model, x, y, tf.constant(8.0))
    kernel = next(w for w in model.trainable_weights if w.regularizer is not None)
    logits = model(x, training=True)
    expected = (tf.reduce_mean(step_lib.cross_entropy(y, logits))
                + 1e-3 * tf.reduce_sum(tf.square(kernel)))
    np.testing.assert_allclose(cost.numpy(), expected.numpy(), rtol=1e-6)


def _script(directory, *args, check=True):
    return run_script("train.py", *args, cwd=str(directory), check=check)


def test_sigkill_of_a_streamed_run_then_resume_under_another_k_is_bit_identical(project, tmp_path):
    directory, images, _ = project
    common = [f"--dataset={images}", "--model=user_models:small_cnn", "--epochs=3",
              "--batch_size=16", "--seed=5", "--deterministic", "--noexport",
              f"--memory_budget_mb={TINY_BUDGET}", "--log_every_steps=1", "--jit_compile=off"]
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    _script(directory, *common, f"--model_dir={reference}")
    process = subprocess.Popen(
        script_command("train.py", *common, f"--model_dir={killed}", "--steps_per_loop=1",
                       "--checkpoint_every_steps=1"),
        cwd=str(directory), env=script_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    steps_per_epoch = 4  # 54 training images in mini-batches of 16
    while latest_checkpoint_number(killed) < steps_per_epoch + 2:  # mid-epoch 2
        assert process.poll() is None, "finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    completed = _script(directory, *common, f"--model_dir={killed}", "--steps_per_loop=2")
    assert "resumed from" in completed.stdout and "streamed from" in completed.stdout
    assert_same_final_state(reference, killed)
    assert read_scalars(killed / "train") == read_scalars(reference / "train")


def test_a_damaged_checkpoint_is_moved_aside_and_the_run_resumes_from_the_one_before(project, tmp_path):
    _, images, _ = project
    splits = data.load(images, dev_fraction=0.25)
    config = train_config(tmp_path / "run", RUN, epochs=2, checkpoint_every_steps=4, keep_checkpoints=5,
                     memory_budget_mb=TINY_BUDGET)
    training.train(config, model=user_project.small_cnn, data=splits, verbose=0)
    checkpoints = tmp_path / "run" / "checkpoints"
    newest = tf.train.latest_checkpoint(str(checkpoints))
    (tmp_path / "run" / "results.json").unlink()
    with open(newest + ".data-00000-of-00001", "r+b") as f:
        f.truncate(16)
    resumed = training.train(config, model=user_project.small_cnn, data=splits, verbose=0)
    assert os.listdir(checkpoints / "damaged")
    reference = training.train(train_config(tmp_path / "reference", RUN, epochs=2, memory_budget_mb=TINY_BUDGET),
                               model=user_project.small_cnn, data=splits, verbose=0)
    _assert_same_weights(resumed, reference)


def test_a_second_writer_of_the_same_run_is_refused_before_it_writes(project, tmp_path):
    _, _, table = project
    splits = data.load(table, label_column="species")
    config = train_config(tmp_path / "run", RUN)
    first = training.Trainer(config, model=user_project.subclassed, data=splits, verbose=0)
    try:
        with pytest.raises(run_dir.RunDirError, match="another run is writing it"):
            training.Trainer(config, model=user_project.subclassed, data=splits, verbose=0)
    finally:
        first.close()
    assert not (tmp_path / "run" / "config.json").exists()


def test_the_nan_guard_stops_a_users_diverging_model_and_skips_on_request(project, tmp_path):
    _, _, table = project
    splits = data.load(table, label_column="species")
    with pytest.raises(training.NonFiniteError, match="non-finite cost or gradient"):
        training.train(train_config(tmp_path / "stop", RUN, optimizer="keras_sgd", learning_rate=1e30),
                       model=user_project.subclassed, data=splits, verbose=0)
    skipped = training.train(train_config(tmp_path / "skip", RUN, optimizer="keras_sgd", learning_rate=1e30,
                                     on_nonfinite="skip_step", epochs=1),
                             model=user_project.subclassed, data=splits, verbose=0)
    assert all(np.isfinite(w).all() for w in _weights(skipped))


def test_tensorboard_export_early_stopping_and_diagnosis_for_a_users_model(project, tmp_path):
    _, images, _ = project
    splits = data.load(images, dev_fraction=0.25)
    config = train_config(tmp_path / "run", RUN, epochs=6, histograms=True, export=True,
                     export_dir=str(tmp_path / "saved"), early_stopping_patience=1,
                     early_stopping_min_delta=1.0, memory_budget_mb=TINY_BUDGET, log_every_steps=1)
    result = training.train(config, model=user_project.small_cnn, data=splits, verbose=0)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    # min_delta 1 makes every epoch after the first no improvement: patience 1 stops at epoch 2.
    assert results["stopped_early"] and results["epochs"] == 2
    assert results["exported_dev_accuracy"] == results["history"][0]["dev_accuracy"]
    assert result.diagnosis == results["diagnosis"] and "error" in result.diagnosis
    scalars = read_scalars(tmp_path / "run" / "train")
    assert {"epoch_loss", "epoch_accuracy", "batch_cost", "learning_rate"} <= set(scalars)
    histograms = plugin_tags(tmp_path / "run" / "train", "histograms")
    assert {w.path for w in result.model.weights} <= set(histograms)  # every layer's weights
    assert plugin_tags(tmp_path / "run", "hparams")
    # The export serves raw images, as float32 and as uint8, in a fresh process.
    x, _ = data.in_memory(splits.test)
    expected = tf.nn.softmax(result.model(x[:5], training=False)).numpy()
    np.save(tmp_path / "x.npy", x[:5].numpy())
    code = ("import sys, numpy as np, tensorflow as tf\n"
            "s = tf.saved_model.load(sys.argv[1]).signatures\n"
            "x = np.load(sys.argv[2])\n"
            "a = s['serving_default'](features=tf.constant(x))['output_0'].numpy()\n"
            "b = s['serving_uint8'](features=tf.constant(x.astype(np.uint8)))['output_0'].numpy()\n"
            "np.save(sys.argv[3], np.stack([a, b]))\n")
    subprocess.run([sys.executable, "-c", code, result.export_path, str(tmp_path / "x.npy"),
                    str(tmp_path / "served.npy")], check=True, env=script_env(), timeout=120)
    served = np.load(tmp_path / "served.npy")
    np.testing.assert_allclose(served[0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(served[1], served[0])


def test_a_users_model_fn_under_mirrored_trains_as_one_device(project, tmp_path, two_cpu_strategy):
    _, _, table = project
    splits = data.load(table, label_column="species")
    runs = [training.train(train_config(tmp_path / name, RUN, epochs=2), model=user_project.subclassed,
                           data=splits, strategy=strategy, verbose=0)
            for name, strategy in (("one", tf.distribute.get_strategy()),
                                   ("mirrored", two_cpu_strategy))]
    for x, y in zip(*(_weights(r) for r in runs), strict=True):
        np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6)
    # A model built outside the strategy's scope cannot be mirrored: said in one line. (One not
    # yet built is built in the scope, by the first call.)
    info = data.prepare(splits, 0, str(tmp_path)).info
    built = user_project.subclassed(info)
    built(tf.zeros((1, 4)))
    with pytest.raises(training.ModelError, match="built inside the strategy's scope"):
        training.train(train_config(tmp_path / "outside", RUN), model=built, data=splits,
                       strategy=two_cpu_strategy, verbose=0)


def test_the_scripts_train_a_users_subclassed_model_on_a_csv(project, tmp_path):
    directory, _, table = project
    completed = _script(directory, f"--dataset={table}", "--label_column=species",
                        "--model=user_models:subclassed", "--epochs=2",
                        f"--model_dir={tmp_path / 'run'}", f"--export_dir={tmp_path / 'saved'}")
    assert "no test split given: 60 examples (20%)" in completed.stdout
    assert "data: train 180 x (4,) in memory" in completed.stdout
    assert os.path.isdir(tmp_path / "saved" / "table" / "1")


BAD_INPUTS = {
    "model_output_width": (["--model=user_models:wrong_width"], "{images}",
                           r"error: model 'sequential.*' must output one logit per class, shape "
                           r"\(batch, 3\)\. Received: outputs of shape \(1, 4\)"),
    "model_not_a_model": (["--model=user_models:not_a_model"], "{images}",
                          r"error: model_fn\(info\) must return a keras\.Model\. Received: str"),
    "model_does_not_import": (["--model=no_such_module:f"], "{images}",
                              r"error: model must be mlp, cnn or package\.module:function, a module "
                              r"that imports\. Received: model='no_such_module:f' \(ModuleNotFoundError"),
    "csv_without_label_column": ([], "{table}", r"label_column must be one of the columns of "),
    "csv_non_numeric": ([], "{bad_csv}", r"line 3: column 'b' must be a number\. Received: 'x'"),
    "csv_nan": (["--label_column=label"], "{nan_csv}", r"example \d+: feature \[0\] is not finite, nan"),
    "folder_one_class": ([], "{one_class}", r"at least two\. Received: dataset=.* with 1 subfolder"),
    "folder_unreadable_image": ([], "{broken_images}", r"must be an image of shape \(8, 8, 1\)"),
    "npz_negative_label": ([], "{negative_npz}", r"label outside \[0, 2\), -1"),
    "missing_path": ([], "{tmp}/nowhere.csv", r"Received: dataset='.*/nowhere\.csv', which does not exist"),
    "seed_out_of_range": (["--seed=4294967296"], "moons", r"--seed must be an integer in \[0, 2\*\*32\)"),
    "cnn_on_points": (["--model=cnn"], "moons", r"--model=cnn needs images .* shape \(2,\)"),
}


@pytest.fixture(scope="module")
def bad_paths(project, tmp_path_factory):
    directory, images, table = project
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "bad.csv").write_text("a,b,label\n1,2,0\n3,x,1\n")
    (tmp / "nan.csv").write_text("a,label\n1,0\nnan,1\n2,0\n3,1\n4,0\n5,1\n")
    user_project.write_images(str(tmp / "one_class"))
    for name in ("line", "cross"):
        for part in ("train", "test"):
            shutil.rmtree(tmp / "one_class" / part / name)
    broken = tmp / "broken_images"
    user_project.write_images(str(broken))
    (broken / "train" / "cross" / "3.png").write_bytes(b"\x89PNG broken")
    np.savez(tmp / "negative.npz", x_train=np.zeros((10, 2)), y_train=np.array([0, 1] * 4 + [-1, 1]))
    return dict(images=images, table=table, bad_csv=tmp / "bad.csv", nan_csv=tmp / "nan.csv",
                one_class=tmp / "one_class", broken_images=broken, negative_npz=tmp / "negative.npz",
                tmp=tmp)


def _one_line(completed, pattern):
    """Exit status 1 and one line on stderr matching ``pattern`` (absl's advice after a bad flag,
    "Pass --helpshort ...", aside): no traceback, nothing trained."""
    lines = [line for line in completed.stderr.splitlines() if not line.startswith("Pass --help")]
    assert completed.returncode == 1 and len(lines) == 1, completed.stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert "epoch" not in completed.stdout


def test_bad_input_is_one_line_and_exit_1_with_nothing_written(project, bad_paths, tmp_path):
    """Each case of BAD_INPUTS through scripts/train.py, as a user runs it (processes forked from
    one that imported TensorFlow once)."""
    directory = project[0]
    cases = sorted(BAD_INPUTS)
    steps = [dict(argv=[os.path.join(REPO_ROOT, "scripts", "train.py"),
                        f"--dataset={BAD_INPUTS[case][1].format(**bad_paths)}", *BAD_INPUTS[case][0],
                        f"--model_dir={tmp_path / case}", "--epochs=1"]) for case in cases]
    ran = run_forked(steps, cwd=str(directory), out_dir=str(tmp_path / "out"))
    assert len(ran) == len(cases)
    for case, (code, stdout, stderr) in zip(cases, ran):
        completed = subprocess.CompletedProcess([], code, stdout, stderr)
        try:
            _one_line(completed, BAD_INPUTS[case][2])
        except AssertionError as error:
            raise AssertionError(f"case {case}: {error}") from None
        model_dir = tmp_path / case
        assert not model_dir.exists() or os.listdir(model_dir) == [run_dir.LOCK_FILE], case
