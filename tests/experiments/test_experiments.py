"""The experiments, shortened (``quick``), show the course's orderings; their outputs are complete.

The expected orderings come from the course (and docs/methods.md §2, §3, §7, §8, §10): He beats
large random beats zeros; L2 and dropout beat no regularisation on dev; Adam beats gradient
descent at α = 0.0007; fixed-interval inverse-time decay beats per-step decay; BatchNorm trains
at an α where the plain network does not. Each quick run uses fixed seeds; the orderings are
asserted on the rows directly, and ``Experiment.holds`` is checked against planted orderings.
"""

import os
from types import SimpleNamespace

import matplotlib.image  # the test extra: a missing matplotlib fails these tests, never skips them
import pytest

from helpers import run_script
from tfnet import experiments

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    return matplotlib.image.imread(path).shape  # (height, width, channels): a readable image


def _run(name, tmp_path, data_dir=None):
    experiment = experiments.EXPERIMENTS[name]
    report = experiments.run(name, str(tmp_path), quick=True, data_dir=data_dir, verbose=0)
    directory = tmp_path / name
    for file in ("results.md", "results.csv"):
        assert (directory / file).is_file(), file
    _assert_png(directory / "cost_curves.png")
    boundaries = directory / "decision_boundaries.png"
    if experiment.two_dimensional:
        # One 320 × 288 pixel panel per variant, three to a line (plots.plot_decision_boundaries).
        columns = min(3, len(report.rows))
        lines = -(-len(report.rows) // columns)
        assert _assert_png(boundaries)[:2] == (288 * lines, 320 * columns)
    else:
        assert not boundaries.exists()
    sweep = directory / "learning_rate_sweep.png"
    if experiment.sweep is not None:
        _assert_png(sweep)
    else:
        assert not sweep.exists()
    csv_lines = (directory / "results.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in csv_lines[1:]] == list(report.rows)
    for variant in report.rows:  # One TensorBoard run per variant, with train and dev curves.
        assert os.listdir(directory / variant / "train") and os.listdir(directory / variant / "dev")
        assert f"| {variant} |" in report.markdown
    assert "— holds." in report.markdown
    return report


def test_initialization_he_beats_random_large_beats_zeros(tmp_path):
    report = _run("initialization", tmp_path)
    rows = report.rows
    assert rows["he"].dev_accuracy > rows["random_large"].dev_accuracy > rows["zeros"].dev_accuracy
    # Zeros never break symmetry: every example gets the same logits, one class is predicted.
    assert rows["zeros"].dev_accuracy < 0.55
    assert report.holds


def test_regularization_beats_none_on_dev(tmp_path):
    rows = _run("regularization", tmp_path).rows
    assert rows["none"].train_accuracy == 1.0  # the unregularised network fits every point
    assert rows["l2"].dev_accuracy > rows["none"].dev_accuracy
    assert rows["dropout"].dev_accuracy > rows["none"].dev_accuracy


def test_adam_beats_gradient_descent_at_a_small_learning_rate(tmp_path):
    rows = _run("optimizers", tmp_path).rows
    assert rows["adam"].train_accuracy > rows["gd"].train_accuracy + 0.05
    assert rows["adam"].final_cost < rows["gd"].final_cost
    assert rows["gd"].course == "0.717" and rows["adam"].course == "0.94"


def test_interval_decay_beats_decay_every_epoch(tmp_path):
    rows = _run("lr_decay", tmp_path).rows
    assert set(rows) == {"gd_every_epoch", "gd_every_100", "adam_every_epoch", "adam_every_100"}
    for optimizer in ("gd", "adam"):
        every_epoch, interval = rows[f"{optimizer}_every_epoch"], rows[f"{optimizer}_every_100"]
        alpha0 = every_epoch.config.learning_rate
        epochs = every_epoch.config.epochs
        # Decayed every epoch, α has collapsed: α₀/(1 + 500) after 500 epochs, while the
        # 100-epoch interval form still steps with α₀/(1 + 5).
        assert every_epoch.learning_rate[-1] == pytest.approx(alpha0 / (1 + epochs), rel=1e-6)
        assert interval.learning_rate[-1] == pytest.approx(alpha0 / (1 + epochs // 100), rel=1e-6)
        # The course's claim: the larger steps reach a lower training cost. For gd it all but
        # follows from the interval form's α being the larger at every step; for Adam, whose
        # normalised steps could as well overshoot, it is an outcome.
        assert interval.final_cost < every_epoch.final_cost, optimizer


def test_batch_norm_tolerates_a_large_learning_rate(tmp_path, shared_tfds):
    report = _run("batch_norm", tmp_path, data_dir=shared_tfds)
    rows = report.rows
    # At α = 0.1 both networks train; at α = 1 only the one with BatchNorm does, and as well as
    # it does at 0.1, so its best α is not below the plain network's.
    assert min(rows["plain_lr0.1"].dev_accuracy, rows["bn_lr0.1"].dev_accuracy) > 0.8
    assert rows["bn_lr1"].dev_accuracy > 0.8 > rows["plain_lr1"].dev_accuracy
    assert rows["bn_lr1"].dev_accuracy >= rows["bn_lr0.1"].dev_accuracy - 0.05
    assert report.holds


def _rows(dev_accuracy):
    """Stand-in rows: a dev accuracy, a final cost that falls as it rises, and the α that the
    batch_norm variant names carry."""
    return {
        name: SimpleNamespace(
            dev_accuracy=value, train_accuracy=value, final_cost=1 - value,
            config=SimpleNamespace(learning_rate=float(name.rsplit("_lr", 1)[1]) if "_lr" in name else None),
        )
        for name, value in dev_accuracy.items()
    }


@pytest.mark.parametrize("name, good, bad", [
    ("initialization", dict(zeros=0.5, random_large=0.6, he=0.9), dict(zeros=0.5, random_large=0.9, he=0.6)),
    ("regularization", dict(none=0.9, l2=0.95, dropout=0.93), dict(none=0.9, l2=0.95, dropout=0.89)),
    ("optimizers", dict(gd=0.5, adam=0.9, keras_sgd=0.5, keras_adam=0.9), dict(gd=0.5, adam=0.9, keras_sgd=0.9, keras_adam=0.5)),
    ("optimizers", dict(gd=0.5, momentum=0.5, adam=0.9), dict(gd=0.5, momentum=0.95, adam=0.9)),
    ("lr_decay", dict(gd_every_epoch=0.8, gd_every_100=0.9, adam_every_epoch=0.9, adam_every_100=0.95),
     dict(gd_every_epoch=0.8, gd_every_100=0.9, adam_every_epoch=0.95, adam_every_100=0.9)),
    ("batch_norm", {"plain_lr0.1": 0.9, "bn_lr0.1": 0.92, "plain_lr1": 0.1, "bn_lr1": 0.9},
     {"plain_lr0.1": 0.9, "bn_lr0.1": 0.92, "plain_lr1": 0.85, "bn_lr1": 0.9}),
    ("batch_norm", {"plain_lr0.1": 0.9, "bn_lr0.1": 0.92, "plain_lr1": 0.1, "bn_lr1": 0.9},
     {"plain_lr0.1": 0.9, "bn_lr0.1": 0.92, "plain_lr1": 0.1, "bn_lr1": 0.5}),  # BN collapses too
])
def test_holds_detects_a_broken_ordering(name, good, bad):
    # Planted orderings: the check must accept the course's and reject a swapped one.
    holds = experiments.EXPERIMENTS[name].holds
    assert holds(_rows(good))
    assert not holds(_rows(bad))


def test_unknown_experiment_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"experiment must be one of initialization, .*Received: experiment='dropout'"):
        experiments.run("dropout", str(tmp_path))


def test_batch_norm_without_mnist_t10k_is_refused_in_one_line_before_any_training(tmp_path):
    output_dir = tmp_path / "out"
    result = run_script("experiments.py", "--experiment=batch_norm", f"--data_dir={tmp_path}",
                        f"--output_dir={output_dir}", timeout=120, check=False)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: --experiment=batch_norm: it needs mnist_t10k in --data_dir={tmp_path}")
    assert not output_dir.exists()  # no experiment started


def test_all_experiments_without_mnist_t10k_run_the_others(tmp_path):
    runnable, skipped = experiments.runnable(experiments.NAMES, data_dir=str(tmp_path))
    assert runnable == ("initialization", "regularization", "optimizers", "lr_decay")
    assert list(skipped) == ["batch_norm"] and "mnist_t10k" in skipped["batch_norm"]


def test_all_experiments_run_with_mnist_t10k_in_data_dir(shared_tfds):
    runnable, skipped = experiments.runnable(experiments.NAMES, data_dir=shared_tfds)
    assert runnable == experiments.NAMES and skipped == {}
