"""tfnet's optimisers under MirroredStrategy and mixed precision, and saved / reloaded mid-run.

Expected numbers come from the same optimiser in eager model.fit on one device in float32
(the ``reference`` fixture), or from uninterrupted training for save / reload.
"""

import pytest

import keras
# A sibling module: pytest puts this directory on sys.path (tests/ is not a package).
from optimizer_training_setup import (
    BATCH, EPOCHS, FACTORIES, INITIAL, NAMES, X, Y, assert_weights_close, fit, make_model,
)


@pytest.fixture(scope="module")
def reference():
    """Eager model.fit on one device, per optimiser."""
    return {name: fit(FACTORIES[name]()) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_mirrored_strategy_matches_one_device(name, reference, two_cpu_strategy):
    with two_cpu_strategy.scope():
        optimizer = FACTORIES[name]()
    weights, _ = fit(optimizer, strategy=two_cpu_strategy)
    assert_weights_close(weights, reference[name][0])


@pytest.mark.parametrize("name", NAMES)
def test_loss_scale_optimizer_under_mixed_float16(name, reference):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        optimizer = keras.optimizers.LossScaleOptimizer(FACTORIES[name]())
        weights, losses = fit(optimizer)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    steps = EPOCHS * len(X) // BATCH
    assert int(optimizer.inner_optimizer.iterations) == steps  # no step skipped as overflow
    # float16 forward/backward: the same trajectory to float16 precision.
    assert_weights_close(weights, reference[name][0], rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize("name", NAMES)
def test_saved_model_reloads_slots_and_continues_step_for_step(name, tmp_path):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    batches = [(X[s:s + BATCH], Y[s:s + BATCH]) for s in range(0, len(X), BATCH)] * 2

    def compiled():
        model = make_model(INITIAL)
        model.compile(optimizer=FACTORIES[name](), loss=loss)
        return model

    uninterrupted = compiled()
    expected = []
    for x, y in batches:
        uninterrupted.train_on_batch(x, y)
        expected.append([w.numpy() for w in uninterrupted.weights])

    interrupted = compiled()
    half = len(batches) // 2
    for x, y in batches[:half]:
        interrupted.train_on_batch(x, y)
    interrupted.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")

    assert type(reloaded.optimizer) is type(interrupted.optimizer)
    assert reloaded.optimizer.get_config() == interrupted.optimizer.get_config()
    saved_slots = [v.numpy() for v in interrupted.optimizer.variables]
    assert_weights_close([v.numpy() for v in reloaded.optimizer.variables], saved_slots, rtol=0, atol=0)
    for step, (x, y) in enumerate(batches[half:], start=half):
        reloaded.train_on_batch(x, y)
        assert_weights_close([w.numpy() for w in reloaded.weights], expected[step], rtol=1e-6, atol=1e-7)
