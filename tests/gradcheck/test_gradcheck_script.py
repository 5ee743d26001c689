"""scripts/gradcheck.py end to end: fresh weights, a training checkpoint, bad flags.

Each case is a process of its own, forked from one that imported TensorFlow once
(``helpers.run_forked``); the case that checks that nothing of TensorFlow's reaches stderr runs
as a plain ``python`` process, start-up included. The model flags are train.py's own
(tfnet.flags); defaults are the moons MLP, which train.py trains in a second with `--epochs=1`.
"""

import os
import re
import subprocess

import pytest

from helpers import REPO_ROOT, run_forked, run_script, script_env


def _cost(stdout):
    """J as the report prints it ("J = <value>")."""
    return float(re.search(r"^J = (\S+)$", stdout, re.MULTILINE).group(1))


def _assert_correct_report(completed):
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert re.search(r"^relative difference overall: reverse vs numerical \S+  ->  CORRECT  "
                     r"\(the worst figure, \S+, from reverse vs numerical, \S+;", completed.stdout,
                     re.MULTILINE), completed.stdout
    assert "per variable (worst first):" in completed.stdout
    # The training model's variables (tfnet.model.build_model's layer names) are listed.
    for name in ("dense_1/kernel", "logits/bias"):
        assert name in completed.stdout, completed.stdout


# Plants a bug through the library before running the script: tfnet's Dense with its L2 cost cut
# off from the gradient (tf.stop_gradient), so the script's check must say WRONG and exit 1.
_PLANTED_L2_WITHOUT_GRADIENT = """
import runpy, sys
import tensorflow as tf
from tfnet.layers import dense

def l2_cost_without_gradient(self, m):
    kernel = tf.stop_gradient(self.kernel)
    return self.l2 / (2.0 * tf.cast(m, kernel.dtype)) * tf.reduce_sum(tf.square(kernel))

dense.Dense.l2_cost = l2_cost_without_gradient
sys.argv = [{script!r}, "--l2=0.5"]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

SCRIPTS = os.path.join(REPO_ROOT, "scripts")
# name -> the case's step: gradcheck.py's flags, or another script's argv, or Python source.
CASES = {
    "default": [],
    "train": dict(argv=[os.path.join(SCRIPTS, "train.py"), "--epochs=1", "--model_dir=run",
                        "--noexport"]),
    "trained": [f"--checkpoint={os.path.join('run', 'checkpoints')}"],
    "bad_mode": ["--mode=bogus"],
    "bad_modes": ["--modes=rev,bwd"],
    "forward_and_second_order": ["--hidden_units=4", "--modes=fwd,rev", "--order=2",
                                 "--mode=directional"],
    "active_dropout": ["--keep_prob=0.5"],
    "wrong_gradient": dict(source=_PLANTED_L2_WITHOUT_GRADIENT.format(
        script=os.path.join(SCRIPTS, "gradcheck.py"))),
    "strategy": ["--strategy=mirrored", "--cpu_devices=2"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """name -> CompletedProcess of every case, run in order in one directory (so "trained"
    finds the checkpoint "train" wrote)."""
    steps = [case if isinstance(case, dict)
             else dict(argv=[os.path.join(SCRIPTS, "gradcheck.py"), *case])
             for case in CASES.values()]
    ran = run_forked(steps, cwd=tmp_path_factory.mktemp("cases"),
                     out_dir=str(tmp_path_factory.mktemp("out")))
    return {name: subprocess.CompletedProcess(step.get("argv"), status, stdout, stderr)
            for name, step, (status, stdout, stderr) in zip(CASES, steps, ran, strict=True)}


def test_default_flags_print_a_correct_report(runs):
    default_run = runs["default"]
    _assert_correct_report(default_run)
    assert re.search(r"^Gradient check: the gradient of J \(\d+ variables, [\d,]+ components\)\n"
                     r"\(full, float64, ", default_run.stdout, re.MULTILINE), default_run.stdout


def test_checkpoint_of_a_short_training_run_is_checked(runs):
    assert runs["train"].returncode == 0, runs["train"].stderr
    trained = runs["trained"]
    _assert_correct_report(trained)
    # The trained weights were restored: one epoch of training changed J at the same examples.
    fresh = runs["default"].stdout
    assert abs(_cost(trained.stdout) - _cost(fresh)) > 1e-4, (trained.stdout, fresh)


def test_bad_flag_exits_non_zero_naming_it(runs):
    completed = runs["bad_mode"]
    assert completed.returncode != 0
    assert "--mode" in completed.stderr and "bogus" in completed.stderr, completed.stderr


def test_bad_modes_flag_exits_non_zero_naming_it_and_what_is_allowed(runs):
    completed = runs["bad_modes"]
    assert completed.returncode != 0
    assert "--modes must be rev or rev,fwd (in any order). Received: modes='rev,bwd'" in (
        completed.stderr
    ), completed.stderr


def test_forward_mode_and_second_order_flags(runs):
    completed = runs["forward_and_second_order"]
    assert completed.returncode == 0, completed.stdout + completed.stderr
    # The first order in reverse and forward mode: one VJP (the gradient), a JVP per direction.
    assert re.search(r"^Gradient check: .*\n\(directional, float64, .*, 1 VJP, [1-9]\d* JVPs; ",
                     completed.stdout, re.MULTILINE), completed.stdout
    # The moons MLP with 4 hidden units has 4 variables: 16 blocks of its Hessian, 4 random
    # directions each.
    assert re.search(r"^Jacobian check: second order: the Hessian of J", completed.stdout,
                     re.MULTILINE), completed.stdout
    assert "(directional, float64, epsilon=6.06e-06, 130 evaluations, 64 VJPs, 64 JVPs" in (
        completed.stdout
    ), completed.stdout
    # Both orders compare all three pairs.
    assert len(re.findall(r"^relative difference overall: reverse vs numerical \S+, forward vs "
                          r"numerical \S+, forward vs reverse \S+  ->  CORRECT", completed.stdout,
                          re.MULTILINE)) == 2, completed.stdout


def test_active_dropout_exits_1_naming_the_layer_and_the_flag(runs):
    completed = runs["active_dropout"]
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "not a deterministic function" in completed.stderr, completed.stderr
    assert "'dropout_1'" in completed.stderr and "--inference_layers" in completed.stderr
    assert "Traceback" not in completed.stderr, completed.stderr


def test_checkpoint_of_another_model_exits_1_without_the_dropout_hint(tmp_path):
    import tensorflow as tf

    from tfnet import config as config_lib
    from tfnet.gradcheck import training_model

    model, _ = training_model.build_training_model(
        config_lib.TrainConfig(dataset="moons", hidden_units=(16, 4))
    )
    # A training checkpoint holds more than the model (here a step counter): values that a
    # failed restore leaves unused, which TensorFlow would list in warnings.
    tf.train.Checkpoint(model=model, global_step=tf.Variable(7)).save(str(tmp_path / "ckpt"))
    completed = run_script("gradcheck.py", "--hidden_units=8,4", f"--checkpoint={tmp_path}",
                           cwd=tmp_path, check=False, env=script_env(tf_cpp_min_log_level=None))
    assert completed.returncode == 1, completed.stdout + completed.stderr
    [line] = completed.stderr.splitlines()  # one line of ours, nothing of TensorFlow's
    assert line.startswith("error: `checkpoint` must hold the weights of the model"), line
    assert "inference_layers" not in line


def test_a_wrong_gradient_exits_1(runs):
    completed = runs["wrong_gradient"]
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert re.search(r"->  WRONG", completed.stdout), completed.stdout
    assert re.search(r"per variable \(worst first\):\n.*\n  \S*kernel", completed.stdout), completed.stdout


def test_strategy_flags_run_the_check_on_the_strategy_device(runs):
    completed = runs["strategy"]
    _assert_correct_report(completed)
    # The header names the device the check ran on (the mirrored strategy's first CPU); with
    # the default strategy it names none.
    assert re.search(r"^\(full, float64, .*, on \S*device:CPU:0; computed on \S*device:CPU:0\)$",
                     completed.stdout, re.MULTILINE), completed.stdout


@pytest.mark.parametrize("fields", [dict(num_examples=300), dict(model="cnn", dataset="{images}")])
def test_the_checked_model_is_the_one_training_starts_from(tmp_path, fields):
    """The gradient checker builds through the trainer's own path (tfnet.build): the same data
    (--num_examples sizes the set the statistics come from), statistics and initial weights."""
    import numpy as np
    import tensorflow as tf

    from tfnet import config as config_lib
    from tfnet import training
    from tfnet.gradcheck import training_model

    images = tmp_path / "images"
    for label in range(2):
        (images / f"c{label}").mkdir(parents=True)
        for i in range(4):
            pixels = np.full((6, 6, 1), 40 * i + 100 * label, np.uint8)
            tf.io.write_file(str(images / f"c{label}" / f"{i}.png"), tf.io.encode_png(pixels))
    values = {k: v.format(images=images) if isinstance(v, str) else v for k, v in fields.items()}
    config = config_lib.TrainConfig(model_dir=str(tmp_path / "run"), export=False,
                                    hidden_units=(4,), conv_filters=(2,), **values)
    checked, _ = training_model.build_training_model(config)
    trainer = training.Trainer(config, verbose=0)
    try:
        trained = trainer.model
        assert [w.path for w in checked.weights] == [w.path for w in trained.weights]
        for a, b in zip(checked.weights, trained.weights, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
        # The normalisation statistics are constants of the model, not weights: its outputs say.
        probe = tf.random.stateless_uniform((3, *trainer.info.input_shape), (1, 2), 0, 255)
        np.testing.assert_array_equal(checked(probe, training=False).numpy(),
                                      trained(probe, training=False).numpy())
    finally:
        trainer.close()
