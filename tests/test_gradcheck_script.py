"""scripts/gradcheck.py end to end, in a subprocess: fresh weights, a training checkpoint, bad flags.

The model flags are train.py's own (tfnet.flags); defaults are the moons MLP, which train.py
trains in a second with `--epochs=1`.
"""

import os
import re

import pytest

from helpers import run_script


def _cost(stdout):
    """J as the report prints it ("J = <value>")."""
    return float(re.search(r"^J = (\S+)$", stdout, re.MULTILINE).group(1))


def _assert_correct_report(completed):
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert re.search(r"relative difference = \S+ overall, \S+ worst variable \(\S+\)  ->  CORRECT",
                     completed.stdout), completed.stdout
    assert "per variable (worst first):" in completed.stdout
    # The training model's variables (tfnet.model.build_model's layer names) are listed.
    for name in ("dense_1/kernel", "logits/bias"):
        assert name in completed.stdout, completed.stdout


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """One run with the default flags, shared: each run starts TensorFlow."""
    return run_script("gradcheck.py", cwd=tmp_path_factory.mktemp("default"))


def test_default_flags_print_a_correct_report(default_run):
    _assert_correct_report(default_run)
    assert "Gradient check (full, float64" in default_run.stdout


def test_checkpoint_of_a_short_training_run_is_checked(tmp_path, default_run):
    model_dir = str(tmp_path / "run")
    run_script("train.py", "--epochs=1", f"--model_dir={model_dir}", "--noexport", cwd=tmp_path)
    checkpoints = os.path.join(model_dir, "checkpoints")
    assert os.path.isdir(checkpoints)
    trained = run_script("gradcheck.py", f"--checkpoint={checkpoints}", cwd=tmp_path)
    _assert_correct_report(trained)
    # The trained weights were restored: one epoch of training changed J at the same examples.
    fresh = default_run.stdout
    assert abs(_cost(trained.stdout) - _cost(fresh)) > 1e-4, (trained.stdout, fresh)


def test_bad_flag_exits_non_zero_naming_it(tmp_path):
    completed = run_script("gradcheck.py", "--mode=bogus", cwd=tmp_path, check=False)
    assert completed.returncode != 0
    assert "--mode" in completed.stderr and "bogus" in completed.stderr, completed.stderr
