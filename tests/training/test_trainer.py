"""tfnet.training in process: determinism, the exported model, unaugmented evaluation, the
diagnosis, config checks."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from helpers import train_config
from helpers import script_env
from tfnet import config as config_lib
from tfnet import data, diagnosis, training
from tfnet.training import export
from tfnet.training import xla


RUN = dict(dataset="moons", optimizer="keras_adam", epochs=3, hidden_units=(16, 8), seed=5,
           export=True, checkpoint_every_seconds=60.0)


def test_same_seed_deterministic_runs_give_bit_identical_weights(tmp_path):
    def run(name, seed=5):  # each in its own model_dir: a shared one would resume, not re-run
        config = train_config(tmp_path / name, RUN, deterministic=True, export=False, seed=seed)
        return training.train(config, verbose=0)

    first = run("first").model.get_weights()
    second = run("second").model.get_weights()
    other = run("other", seed=6)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other.model.get_weights()))


_SERVE = """
import sys, numpy as np, tensorflow as tf
moons = tf.saved_model.load(sys.argv[1]).signatures
mnist = tf.saved_model.load(sys.argv[2]).signatures
x, images = np.load(sys.argv[3]), np.load(sys.argv[4])
outputs = [next(iter(serve(features=tf.constant(inputs)).values())).numpy() for serve, inputs in (
    (moons["serving_default"], x), (mnist["serving_default"], images.astype(np.float32)),
    (mnist["serving_uint8"], images))]
np.savez(sys.argv[5], *outputs, moons_signatures=sorted(moons), mnist_signatures=sorted(mnist))
"""


def test_exports_serve_raw_inputs_and_uint8_images_in_a_fresh_process(tmp_path, shared_tfds):
    moons = training.train(train_config(tmp_path / "moons", RUN, epochs=2), verbose=0)
    mnist = training.train(train_config(tmp_path / "mnist", RUN, dataset="mnist_t10k",
                                        data_dir=shared_tfds, hidden_units=(16,), epochs=1,
                                        batch_size=256), verbose=0)
    assert moons.export_path == str(tmp_path / "saved_models" / "moons" / "1")
    assert mnist.export_path == str(tmp_path / "saved_models" / "mnist_t10k" / "1")
    x, _ = data.make_embedded("moons", num_examples=32, seed=99)  # raw, unnormalised inputs
    test = data.in_memory(data.load("mnist_t10k", shared_tfds).test)
    test_features, test_labels = test.features[:32], test.labels[:32]
    images = test_features.numpy().astype(np.uint8)  # the pixels as stored: whole numbers
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "images.npy", images)
    subprocess.run([sys.executable, "-c", _SERVE, moons.export_path, mnist.export_path,
                    str(tmp_path / "x.npy"), str(tmp_path / "images.npy"), str(tmp_path / "out.npz")],
                   check=True, env=script_env(), timeout=120)
    served = np.load(tmp_path / "out.npz")
    assert list(served["moons_signatures"]) == ["serving_default"]  # not images: no uint8
    assert list(served["mnist_signatures"]) == ["serving_default", "serving_uint8"]
    expected_moons = tf.nn.softmax(moons.model(x, training=False)).numpy()
    expected_mnist = tf.nn.softmax(mnist.model(test_features, training=False)).numpy()
    np.testing.assert_allclose(served["arr_0"], expected_moons, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(served["arr_1"], expected_mnist, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(served["arr_2"], served["arr_1"])  # uint8 = the same floats
    np.testing.assert_allclose(served["arr_0"].sum(axis=1), 1.0, rtol=1e-6)  # probabilities
    assert np.mean(served["arr_2"].argmax(axis=1) == test_labels.numpy()) > 0.5


def _independent_accuracy(model, examples):
    logits = model(examples.features, training=False).numpy()
    return float(np.mean(logits.argmax(axis=1) == examples.labels.numpy()))


def test_dev_and_test_are_evaluated_unaugmented(tmp_path, shared_tfds):
    # With crop,rotate on, the reported figures are those of the returned model on the raw
    # splits, evaluated here independently: augmenting them would change them (rotated, shifted
    # digits are harder), as a planted bug that augments the dev split in evaluation shows.
    config = train_config(tmp_path / "run", RUN, dataset="mnist_t10k", data_dir=shared_tfds, augment="crop,rotate",
                     hidden_units=(32,), epochs=1, batch_size=64, optimizer="adam",
                     learning_rate=0.003, export=False)
    result = training.train(config, verbose=0)
    splits = data.load("mnist_t10k", shared_tfds)
    last = result.history[-1]
    assert last["dev_accuracy"] == pytest.approx(_independent_accuracy(result.model, data.in_memory(splits.dev)), abs=1e-9)
    assert result.test_accuracy == pytest.approx(_independent_accuracy(result.model, data.in_memory(splits.test)), abs=1e-9)
    assert result.train_accuracy == pytest.approx(_independent_accuracy(result.model, data.in_memory(splits.train)), abs=1e-9)
    assert last["dev_accuracy"] > 0.6  # trained (chance is 0.1): an augmented split would score less


@pytest.mark.parametrize(
    "train_error, dev_error, best_error, expected",
    [
        (0.01, 0.11, 0.0, "high variance"),  # the course's example: 1% / 11%
        (0.15, 0.16, 0.0, "high bias"),
        (0.15, 0.30, 0.0, "high bias and high variance"),
        (0.005, 0.01, 0.0, "low bias and low variance"),
        (0.15, 0.16, 0.14, "low bias and low variance"),  # human error 14%: near the best
    ],
)
def test_diagnosis_follows_the_course_rules(train_error, dev_error, best_error, expected):
    verdict = diagnosis.diagnose(train_error, dev_error, best_error)
    assert verdict.split(":")[0].split(" (")[0] == expected


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("learning_rate", 0.0, "learning_rate must be > 0. Received: learning_rate=0.0"),
        ("beta1", 1.0, "beta1 must be in [0, 1). Received: beta1=1.0"),
        ("epsilon", -1e-8, "epsilon must be >= 0. Received: epsilon=-1e-08"),
        ("hidden_units", (), "hidden_units must be a non-empty comma-separated list"),
        ("activation", "swish7", "activation must be one of relu, tanh"),
    ],
)
def test_config_validation_names_field_and_value(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        config_lib.validate(train_config(tmp_path / "run", RUN, **{field: value}))


def _mlp(hidden_units, inputs=784):
    from tfnet import model as model_lib

    return model_lib.build_model((inputs,), 10, hidden_units, np.zeros(inputs), np.ones(inputs))


@pytest.mark.parametrize("hidden_units, inputs, steps, expected", [
    ((256, 128), 784, 1500, True),  # a 15-epoch mnist_t10k run: compiling pays
    ((256, 128), 784, 1000, False),  # 10 epochs: it does not
    ((64, 32), 784, 4500, True),
    ((64, 32), 784, 3000, False),
    ((64, 32), 2, 390, False),  # the main job (moons, 30 epochs)
    ((64, 32), 2, 15000, True),  # the course's 5,000-epoch runs on 300 points (3 steps each)
])
def test_automatic_xla_compiles_when_the_steps_save_more_than_compiling_costs(
        hidden_units, inputs, steps, expected):
    model = _mlp(hidden_units, inputs)
    parameters = sum(int(w.shape.num_elements()) for w in model.trainable_weights)
    assert xla.pays_off(steps, parameters) is expected
    config = config_lib.TrainConfig(jit_compile="auto")
    assert xla.use_xla(config, tf.distribute.get_strategy(), steps, model) is expected


@pytest.mark.parametrize("fields, expected", [
    (dict(jit_compile="auto", dataset="mnist_t10k", augment="crop"), True),
    (dict(jit_compile="auto", dataset="mnist_t10k", augment="crop,rotate"), False),  # no kernel
    (dict(jit_compile="on"), True),
    (dict(jit_compile="off"), False),
])
def test_automatic_xla_only_where_every_augmentation_compiles(fields, expected):
    config = config_lib.TrainConfig(**fields)
    assert xla.use_xla(config, tf.distribute.get_strategy(), 10**6, _mlp((64,))) is expected


def test_automatic_xla_is_off_for_convolutions_and_under_a_strategy_with_replicas(two_cpu_strategy):
    from tfnet import model as model_lib

    config = config_lib.TrainConfig(jit_compile="auto")
    cnn = model_lib.build_cnn((28, 28, 1), 10, (8,), (16,), np.zeros(784), np.ones(784))
    assert xla.use_xla(config, tf.distribute.get_strategy(), 10**6, cnn) is False
    assert xla.use_xla(config, two_cpu_strategy, 10**6, _mlp((64,))) is False


def test_running_a_finished_run_again_trains_writes_and_exports_nothing(tmp_path, capsys):
    config = train_config(tmp_path / "run", RUN, epochs=2, jit_compile="off")
    first = training.train(config, verbose=0)
    run_dir = tmp_path / "run"
    files = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    again = training.train(config, verbose=2)
    out = capsys.readouterr().out
    assert f"already finished: {run_dir} (epoch 2/2); nothing trained, written or exported" in out
    assert f"test loss {first.test_loss:.4f} acc {first.test_accuracy:.4f}" in out
    assert (again.history, again.test_accuracy, again.export_path) == (
        first.history, first.test_accuracy, first.export_path)
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file() and p.name != "run.lock"} == {
        p: t for p, t in files.items() if p.name != "run.lock"}
    assert export.versions(str(tmp_path / "saved_models" / "moons")) == [1]
    more = training.train(train_config(tmp_path / "run", RUN, epochs=3, jit_compile="off"), verbose=0)  # more epochs
    assert [r["epoch"] for r in more.history] == [1, 2, 3] and more.export_path.endswith("2")


def test_without_model_dir_other_flags_land_in_another_run_and_the_same_command_resumes():
    base = config_lib.TrainConfig()
    assert base.run_dir == f"runs/moons-adam-{base.digest}"
    same = [config_lib.TrainConfig(learning_rate=0.001), config_lib.TrainConfig(epochs=60),
            config_lib.TrainConfig(export=False, log_every_steps=3, jit_compile="on")]
    other = [config_lib.TrainConfig(learning_rate=0.01), config_lib.TrainConfig(batch_norm=True),
             config_lib.TrainConfig(seed=1), config_lib.TrainConfig(optimizer="momentum")]
    assert {c.run_dir for c in same} == {base.run_dir}
    assert len({c.run_dir for c in other} | {base.run_dir}) == len(other) + 1


def test_user_actions_see_every_evaluation_after_its_checkpoint(tmp_path):
    """Orbit's train_actions: each action is called once per evaluated epoch, in order, with
    that epoch's record, and a checkpoint due at that step is already on disk."""
    seen = []

    def action(metrics):
        checkpoints = tf.train.get_checkpoint_state(str(tmp_path / "run" / "checkpoints"))
        latest = checkpoints.model_checkpoint_path if checkpoints else ""
        seen.append((dict(metrics), latest))

    steps_per_epoch = 13  # 800 training moons in mini-batches of 64
    config = train_config(tmp_path / "run", RUN, epochs=4, eval_every_epochs=2, export=False,
                     checkpoint_every_steps=2 * steps_per_epoch, checkpoint_every_seconds=0)
    result = training.train(config, verbose=0, actions=[action])
    assert [m for m, _ in seen] == [dict(r, run_dir=config.run_dir) for r in result.history]
    assert [m["epoch"] for m, _ in seen] == [2, 4]
    assert [latest.rsplit("-", 1)[-1] for _, latest in seen] == ["26", "52"]


@pytest.mark.parametrize("train_eval_examples, size", [(0, 200), (50, 50), (10**6, 800)])
def test_each_epoch_evaluates_a_fixed_subset_of_train_and_the_end_the_whole_split(
        tmp_path, train_eval_examples, size):
    config = train_config(tmp_path / "run", RUN, epochs=2, export=False, train_eval_examples=train_eval_examples)
    trainer = training.Trainer(config, verbose=0)
    try:
        subset = trainer.train_subset
        assert len(subset.labels) == size  # 0: as many as dev (200 of moons' 800)
        result = trainer.run()
    finally:
        trainer.close()
    assert result.history[-1]["train_accuracy"] == pytest.approx(
        _independent_accuracy(result.model, subset), abs=1e-9)
    whole = data.in_memory(trainer.data.splits["train"]) if not isinstance(
        trainer.data.splits["train"], data.Examples) else trainer.data.splits["train"]
    assert result.train_accuracy == pytest.approx(_independent_accuracy(result.model, whole), abs=1e-9)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["train_accuracy"] == result.train_accuracy
