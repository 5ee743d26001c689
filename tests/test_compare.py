"""The optimiser comparison: fairness (same start, same batches) and the bowl picture."""

import os

import numpy as np
import pytest

from tfnet import compare
from tfnet import config as config_lib

SMALL = compare.CompareConfig(optimizers=("gd", "keras_sgd", "adam"), hidden_units=(4,),
                              batch_size=32, epochs=3)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return {r.name: r for r in compare.compare(SMALL, str(tmp_path_factory.mktemp("compare")))}


def test_same_start_and_batch_order_make_twins_identical(results):
    # gd and keras_sgd are the same update (docs/methods.md §7); only an unfair comparison (other
    # initial weights or batch order) could make their curves differ.
    np.testing.assert_allclose(results["gd"].train_loss, results["keras_sgd"].train_loss, rtol=1e-6)
    assert results["gd"].train_loss != results["adam"].train_loss


def test_results_are_complete(results):
    for r in results.values():
        assert len(r.train_loss) == len(r.dev_loss) == SMALL.epochs
        assert 0 <= r.dev_accuracy <= 1 and r.ms_per_step > 0
    losses = results["adam"].train_loss
    expected = next((e for e, loss in enumerate(losses, 1) if loss <= SMALL.target_loss), None)
    assert results["adam"].epochs_to_target == expected


def test_table_has_a_row_per_optimizer(results):
    table = compare.format_table(list(results.values()), SMALL.target_loss)
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:]] == ["gd", "keras_sgd", "adam"]


def test_gradient_descent_zigzags_on_the_bowl_and_the_others_do_not():
    crossings = {name: compare.narrow_axis_crossings(path) for name, path in compare.bowl_paths().items()}
    assert crossings["gd"] >= 8
    assert all(crossings[name] <= 2 for name in ("momentum", "rmsprop", "adam"))


def test_unknown_optimizer_is_rejected():
    with pytest.raises(ValueError, match="optimizers must be among"):
        compare.compare(compare.CompareConfig(optimizers=("sgd",)), "unused")
    with pytest.raises(ValueError, match="optimizers must be a comma-separated list of gd, "):
        config_lib.check_fields(compare.CompareConfig(optimizers=("sgd",)))


def test_run_writes_pngs_and_one_tensorboard_run_per_optimizer(tmp_path):
    # matplotlib is in the test extra: without it this test fails (ImportError), it never skips.
    config = compare.CompareConfig(optimizers=("gd", "momentum"), hidden_units=(4,),
                                   batch_size=32, epochs=1)
    report = compare.run(config, str(tmp_path))
    assert "| momentum |" in report and "zig-zags" in report
    assert f"Loss curves: {tmp_path / 'loss_curves.png'}" in report
    for name in ("gd", "momentum"):
        assert os.listdir(tmp_path / name / "train") and os.listdir(tmp_path / name / "dev")
    for name in ("loss_curves.png", "bowl_paths.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
