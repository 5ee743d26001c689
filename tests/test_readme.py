"""README.md followed as a newcomer follows it: every command of its bash blocks and every
self-contained Python block, in the order written, in one fresh workspace.

The commands are read from README.md itself, so the two cannot drift. Each runs as written, with
flags appended that only shorten it (absl keeps a flag's last value: fewer epochs, rounds,
trials), because the property is that the commands work in this order — the run directory the
main job prints is the one later commands name, the flagfiles, checkpoints and exports they read
exist — not what they measure. Commands this machine cannot run are listed with the reason.
"""

import os
import re
import shlex
import sys

import pytest

from helpers import REPO_ROOT, run_forked

README = os.path.join(REPO_ROOT, "README.md")
SHARED = os.path.join(os.path.dirname(REPO_ROOT), "shared")

# Commands, or parts of `&&` chains, that a test cannot run here, and why.
NOT_RUNNABLE = (
    (r"^python3 -m venv|^\. \.venv|^pip ", "installs the package: CI runs the README's install"),
    (r"pytest", "the test suite itself"),
    (r"^tensorboard\b", "serves until stopped"),
    (r"^tfds build", "downloads a dataset"),
    (r"\$HOME|gs://", "needs a downloaded dataset or a bucket"),
    (r"TF_CONFIG=|^ray start|--ray_address=", "needs a cluster of machines"),
    (r"--tpu=", "needs a TPU"),
)
# Flags appended per script: shorter runs, the same commands.
SHORTER = {
    "train.py": ["--epochs=2"],
    "compare_optimizers.py": ["--epochs=2", "--optimizers=adam,keras_adam"],
    "tune.py": ["--epochs=1", "--rounds=1", "--trials_per_round=2"],
    "experiments.py": ["--quick"],
    "study_optimizers.py": ["--epochs=1", "--lr_points=2", "--seeds=1", "--optimizers=adam"],
    "bench_training.py": ["--rounds=1", "--problems=course", "--seconds_per_round=0.05"],
    "bench_optimizers.py": ["--rounds=1", "--steps_per_round=5", "--optimizers=gd",
                            "--jit_compile=off"],
    "bench_batch_norm.py": ["--rounds=1", "--iterations=2", "--shapes=dense", "--jit_compile=off"],
    "bench_gradcheck.py": ["--rounds=1", "--noinclude_eager", "--small_layers=4,4,2",
                           "--large_layers=4,4,2", "--batch=2"],
    "bench_input.py": ["--rounds=1", "--datasets=mnist_t10k", "--mnist_augment=flip",
                       "--hidden_units=8"],
    "bench_trials.py": ["--rounds=1", "--workloads=search", "--search_trials=1",
                        "--search_epochs=1"],
}
# Benchmarks exit 1 when a goal is missed, which a shortened run may well do.
MAY_MISS_A_GOAL = {name for name in SHORTER if name.startswith("bench_")}


def readme_blocks(text):
    """(language, code) of each fenced block of README.md, in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, re.DOTALL | re.MULTILINE)


def commands(text):
    """The README's runnable steps in order: ("bash", argv) or ("python", source), and the
    skipped commands with their reasons."""
    steps, skipped = [], []
    for language, code in readme_blocks(text):
        if language == "python" and code.startswith("import "):
            steps.append(("python", code))
        if language != "bash":
            continue
        for line in code.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                part = part.strip()
                if not part or part.startswith("#"):
                    continue
                reason = next((why for pattern, why in NOT_RUNNABLE if re.search(pattern, part)),
                              None)
                if reason:
                    skipped.append((part, reason))
                else:
                    steps.append(("bash", shlex.split(part, comments=True)))
    return steps, skipped


def _shortened(argv):
    assert argv[0] == "python" and argv[1].startswith("scripts/"), f"not a script: {argv}"
    script = os.path.basename(argv[1])
    extra = [] if "--help" in argv else SHORTER.get(script, [])
    return [sys.executable, *argv[1:], *extra], script


@pytest.fixture
def workspace(tmp_path):
    """A fresh checkout's view: scripts/ and examples/ of this repository, ../shared beside it."""
    if not os.path.isdir(os.path.join(SHARED, "tfds", "mnist_t10k")):
        pytest.skip("../shared/tfds/mnist_t10k is not on this machine (README uses it)")
    repo = tmp_path / "tfnet"
    repo.mkdir()
    for name in ("scripts", "examples"):
        os.symlink(os.path.join(REPO_ROOT, name), repo / name)
    os.symlink(SHARED, tmp_path / "shared")
    return repo


def test_the_readme_finds_its_commands():
    steps, skipped = commands(open(README).read())
    scripts = {os.path.basename(argv[1]) for kind, argv in steps if kind == "bash"}
    # Every script is shown in README.md (and so run here), as are the install and the tests.
    assert scripts == {name for name in os.listdir(os.path.join(REPO_ROOT, "scripts"))
                       if name.endswith(".py")}
    assert any("pytest" in part for part, _ in skipped)
    assert any(kind == "python" for kind, _ in steps)


def test_every_readme_command_works_in_the_order_written(workspace, tmp_path):
    text = open(README).read()
    steps, _ = commands(text)
    main_job_dir = re.search(r"^TensorBoard logs: (runs/\S+)", text, re.MULTILINE).group(1)
    planned, shown = [], []
    for kind, step in steps:
        if kind == "python":
            planned.append(dict(source=step, allowed=[0]))
            shown.append(step.splitlines()[0] + " ...")
        else:
            argv, script = _shortened(step)
            planned.append(dict(argv=argv[1:],
                                allowed=[0, 2] if script in MAY_MISS_A_GOAL else [0]))
            shown.append(shlex.join(step))
    ran = run_forked(planned, cwd=workspace, out_dir=str(tmp_path / "out"))
    for i, step in enumerate(planned):
        assert i < len(ran), f"README step {i + 1} never ran: {shown[i]}"
        code, stdout, stderr = ran[i]
        assert code in step["allowed"], (
            f"README step {i + 1} exited {code}: {shown[i]}\n"
            f"stdout:\n{stdout[-3000:]}\nstderr:\n{stderr[-3000:]}")
        if i == 0:  # the Quickstart's main job: the run directory README's later commands name
            assert step["argv"][0] == "scripts/train.py"
            assert f"TensorBoard logs: {main_job_dir}" in stdout, stdout
