"""Every script's --help: exit status 0, nothing on stderr, the script's purpose, and every flag
it takes with its help (the flags it defines and those tfnet.flags defines for it: training,
benchmark and study settings)."""

import dataclasses
import os
import re

import pytest

from helpers import REPO_ROOT, run_forked
from tfnet import config as config_lib

SCRIPTS = sorted(name for name in os.listdir(os.path.join(REPO_ROOT, "scripts"))
                 if name.endswith(".py"))
_DEFINED = re.compile(r"DEFINE_\w+\(\s*\"(\w+)\"")


def _fields(config_class, names=None):
    return {f.name for f in dataclasses.fields(config_class) if names is None or f.name in names}


def _expected_flags(script):
    """The flags ``script`` takes: those its source defines, and its configs' fields."""
    source = open(os.path.join(REPO_ROOT, "scripts", script)).read()
    expected = set(_DEFINED.findall(source))
    if "define_train_flags()" in source:
        expected |= _fields(config_lib.TrainConfig)
    names = re.search(r"define_train_flags\(names=(\(.*?\)|_\w+)\)", source, re.DOTALL)
    if names and names.group(1).startswith("("):
        expected |= set(re.findall(r"\"(\w+)\"", names.group(1)))
    elif names:  # tune.py: every training flag but those set per trial
        expected |= _fields(config_lib.TrainConfig) - {"model_dir", "export_dir", "export_name",
                                                         "export", "evaluate_test", "resume",
                                                         "overwrite"}
    for module, class_name in re.findall(r"define_config_flags\((\w+)\.(\w+)\)", source):
        import importlib

        package = "benchmarks" if script.startswith("bench_") else "tfnet"
        config_class = getattr(importlib.import_module(f"{package}.{module}"), class_name)
        expected |= _fields(config_class)
    return expected


@pytest.fixture(scope="module")
def helps(tmp_path_factory):
    """Every script's --help, each run in a process of its own forked from one that imported
    TensorFlow once (a script's --help only defines its flags and prints them; its TensorFlow
    start-up lines are the bad-flag tests' concern)."""
    cwd = tmp_path_factory.mktemp("help")
    ran = run_forked([dict(argv=[os.path.join(REPO_ROOT, "scripts", script), "--help"])
                      for script in SCRIPTS], cwd=cwd, out_dir=str(tmp_path_factory.mktemp("out")),
                     timeout=300)
    assert os.listdir(cwd) == []  # --help writes nothing
    return dict(zip(SCRIPTS, ran, strict=True))


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_lists_every_flag_with_its_help_and_exits_0(helps, script):
    status, stdout, stderr = helps[script]
    assert status == 0, stderr
    assert stderr == "", stderr
    expected = _expected_flags(script)
    assert expected, script
    listed = set(re.findall(r"^  --(?:\[no\])?(\w+):", stdout, flags=re.MULTILINE))
    assert expected <= listed, sorted(expected - listed)
    for flag in expected:  # each with a help text of its own, besides its default and type
        block = re.search(rf"^  --(?:\[no\])?{flag}:(.*\n(?:    .*\n)*)", stdout, flags=re.MULTILINE)
        text = [line.strip() for line in block.group(1).splitlines() if line.strip()]
        assert [line for line in text if not line.startswith("(")], flag
    assert stdout.splitlines()[0].strip(), "the usage starts with what the script does"


def test_experiments_help_states_every_experiments_setup(helps):
    from tfnet.experiments import setups

    status, stdout, stderr = helps["experiments.py"]
    assert status == 0, stderr
    for experiment in setups.EXPERIMENTS.values():
        assert f"{experiment.name}: {experiment.setup}" in stdout
