"""tf.distribute: mirrored = single device, multi-worker = single process, checkpoints move
between strategies (issue 8). The CPU is split into two logical devices by conftest.py."""

import json
import os
import socket
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from helpers import train_config
from helpers import run_script, script_command, script_env
from tfnet import training

OPTIMIZERS = ["gd", "momentum", "rmsprop", "adam"]


RUN = dict(dataset="moons", optimizer="adam", learning_rate=0.01, batch_size=64, epochs=2,
           hidden_units=(16, 8), seed=11, checkpoint_every_steps=1000,
           checkpoint_every_seconds=60.0)


def _weights(result):
    return [np.asarray(w) for w in result.model.weights]


CASES = {name: dict(optimizer=name) for name in OPTIMIZERS}
# L2 > 0 with synchronized BatchNorm: BatchNorm's all-reduce interleaves the replica threads in
# the middle of the forward pass, which once mixed the replicas' L2 terms (Keras keeps each
# layer's added losses in one list shared by the threads).
CASES["adam_synchronized_batch_norm_l2"] = dict(
    optimizer="adam", batch_norm=True, bn_synchronized=True, l2=0.1
)


@pytest.mark.parametrize("case", sorted(CASES))
def test_mirrored_over_two_devices_matches_one_device(tmp_path, two_cpu_strategy, case):
    # 2 epochs of moons at global batch 64 = 26 steps (13 per epoch, the last of 32 examples).
    single = training.train(train_config(tmp_path / "single", RUN, **CASES[case]),
                            strategy=tf.distribute.get_strategy(), verbose=0)
    mirrored = training.train(train_config(tmp_path / "mirrored", RUN, **CASES[case]),
                              strategy=two_cpu_strategy, verbose=0)
    assert two_cpu_strategy.num_replicas_in_sync == 2
    names = [w.path for w in single.model.weights]
    if CASES[case].get("batch_norm"):
        assert any("moving_variance" in n for n in names)  # running averages compared too
    assert [w.path for w in mirrored.model.weights] == names
    for name, expected, actual in zip(names, _weights(single), _weights(mirrored), strict=True):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5, err_msg=name)
    assert single.history[-1]["step"] == mirrored.history[-1]["step"] == 26


@pytest.mark.parametrize("first, then", [("mirrored", "default"), ("default", "mirrored")])
def test_a_checkpoint_resumes_under_another_strategy(tmp_path, two_cpu_strategy, first, then):
    strategies = {"default": tf.distribute.get_strategy(), "mirrored": two_cpu_strategy}
    reference = training.train(train_config(tmp_path / "reference", RUN), strategy=strategies["default"], verbose=0)
    model_dir = tmp_path / "switched"
    training.train(train_config(model_dir, RUN, epochs=1), strategy=strategies[first], verbose=0)
    resumed = training.train(train_config(model_dir, RUN, epochs=2), strategy=strategies[then], verbose=0)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    names = [w.path for w in reference.model.weights]
    assert [w.path for w in resumed.model.weights] == names
    for name, expected, actual in zip(names, _weights(reference), _weights(resumed), strict=True):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5, err_msg=name)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_the_same_weights_as_one_process(tmp_path):
    common = ["--optimizer=adam", "--epochs=1", "--batch_size=64", "--hidden_units=16,8",
              "--seed=11", "--noexport"]
    run_script("train.py", *common, f"--model_dir={tmp_path / 'single'}")

    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        env = script_env()
        env["TF_CONFIG"] = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(
            script_command("train.py", *common, "--strategy=multi_worker", f"--model_dir={tmp_path / 'cluster'}"),
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-3000:]

    single = tf.train.load_checkpoint(str(tmp_path / "single" / "checkpoints"))
    cluster = tf.train.load_checkpoint(str(tmp_path / "cluster" / "checkpoints"))
    # Everything but the save counter, the object graph and the history (wall-clock times).
    keys = [k for k in single.get_variable_to_shape_map()
            if not k.startswith(("_CHECKPOINTABLE", "save_counter", "history"))]
    assert any("_trainable_variables" in k for k in keys)  # the weights, reached via the optimiser
    for key in keys:
        np.testing.assert_allclose(cluster.get_tensor(key), single.get_tensor(key), rtol=1e-5, atol=1e-6, err_msg=key)
    # Only the chief (worker 0) wrote: one run directory, no worker scratch left behind.
    assert sorted(os.listdir(tmp_path)) == ["cluster", "single"]
