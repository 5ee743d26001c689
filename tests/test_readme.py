"""The pages followed as a newcomer follows them: every command of README.md and of each page
in docs/, in the order written, each page in a fresh workspace of its own.

The commands are read from the pages themselves, so the two cannot drift: the commands of each
bash block, each ```python block (run as ``python -c`` would run it), and each ```python block
whose first line is ``# <name>.py`` (written to that file, as the page asks its reader to save
it). Each command runs as written, with flags appended that only shorten it (absl keeps a flag's
last value: fewer epochs, rounds, trials, benchmarks), because the property is that the commands
work in this order — the run directory the main job prints is the one later commands name, the
files, flagfiles, checkpoints and exports they read exist — not what they measure. A docs page
starts where the Quickstart leaves its reader: a page that names the main job's run or export
gets the main job run first. Commands this machine cannot run are listed with the reason.

The workspace is a fresh checkout's view: scripts/ and examples/ of this repository, and
``../shared/tfds`` beside it — this machine's where it has one, else a small stand-in
mnist_t10k generated for the test (conftest's ``shared_dir``), so the pages run on a
fresh clone too.
"""

import os
import re
import shlex
import shutil
import sys

import pytest

from helpers import REPO_ROOT, run_forked

README = "README.md"
DOCS = os.path.join(REPO_ROOT, "docs")
PAGES = (README, *(f"docs/{name}" for name in sorted(os.listdir(DOCS)) if name.endswith(".md")))

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
    # One trial at a time: one Ray worker importing TensorFlow, not one per CPU.
    "tune.py": ["--epochs=1", "--rounds=1", "--trials_per_round=2", "--max_concurrent_trials=1"],
    "experiments.py": ["--quick", "--experiment=batch_norm"],  # each is tests/experiments' job
    "study_optimizers.py": ["--epochs=1", "--lr_points=1", "--seeds=1", "--optimizers=adam",
                            "--max_concurrent_trials=1"],
    "bench_training.py": ["--rounds=1", "--problems=course", "--seconds_per_round=0.05"],
    "bench_runs.py": ["--quick", "--benchmarks=main_job"],
    "bench_optimizers.py": ["--rounds=1", "--steps_per_round=5", "--optimizers=gd",
                            "--jit_compile=off"],
    "bench_batch_norm.py": ["--rounds=1", "--iterations=2", "--shapes=dense", "--jit_compile=off"],
    "bench_gradcheck.py": ["--rounds=1", "--noinclude_eager", "--small_layers=4,4,2",
                           "--large_layers=4,4,2", "--batch=2"],
    "bench_input.py": ["--rounds=1", "--datasets=mnist_t10k", "--mnist_augment=flip",
                       "--hidden_units=8"],
    # The page gives --rounds=2, which --quick leaves as given.
    "bench_trials.py": ["--quick", "--rounds=1"],
    "bench_your_data.py": ["--quick", "--benchmarks=memory"],
    # One benchmark, and the page written into the workspace, never over docs/benchmarks.md.
    "bench_all.py": ["--quick", "--benchmarks=optimizers", "--write=benchmarks.md"],
}
# Exit status 2 is a benchmark's missed goal, or an experiment's ordering that did not hold,
# which a shortened run (or the stand-in mnist_t10k) may well give; 1 (a crash) never passes.
# Goals are the benchmarks' business (tests/test_benchmarks.py), orderings the experiments' tests'.
MAY_EXIT_2 = {name for name in SHORTER if name.startswith("bench_")} | {"experiments.py"}
# A ```python block that starts so is a file the page asks its reader to save.
FILE_BLOCK = re.compile(r"# (\w+\.py)\n")


def read(page):
    with open(os.path.join(REPO_ROOT, page)) as f:
        return f.read()


def fenced_blocks(text):
    """(language, code) of each fenced block of a page, in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, re.DOTALL | re.MULTILINE)


def commands(text):
    """The page's runnable steps in order — ("bash", argv), ("python", source) or ("file",
    (name, text)) — and the skipped commands with their reasons."""
    steps, skipped = [], []
    for language, code in fenced_blocks(text):
        if language == "python":
            saved = FILE_BLOCK.match(code)
            steps.append(("file", (saved.group(1), code)) if saved else ("python", code))
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


def main_job_run_dir():
    """The run directory README's Quickstart shows the main job printing."""
    return re.search(r"^TensorBoard logs: (runs/\S+)", read(README), re.MULTILINE).group(1)


def needs_main_job(page, text):
    """Whether a docs page uses what the Quickstart's main job leaves (its run, its export)."""
    return page != README and (main_job_run_dir() in text or "saved_models/moons/" in text)


RUNNABLE_PAGES = [page for page in PAGES if commands(read(page))[0]]


def _shortened(argv):
    assert argv[0] == "python" and argv[1].startswith("scripts/"), f"not a script: {argv}"
    script = os.path.basename(argv[1])
    extra = [] if "--help" in argv else SHORTER.get(script, [])
    return [sys.executable, *argv[1:], *extra], script


def _planned(kind, step):
    """A step as ``helpers.run_forked`` runs it, and how a failure names it."""
    if kind == "python":
        return dict(source=step, allowed=[0]), step.splitlines()[0] + " ..."
    if kind == "file":
        name, text = step
        return (dict(source=f"open({name!r}, 'w').write({text!r})", allowed=[0]),
                f"save {name}")
    argv, script = _shortened(step)
    return (dict(argv=argv[1:], allowed=[0, 2] if script in MAY_EXIT_2 else [0]),
            shlex.join(step))


@pytest.fixture
def workspace(tmp_path, shared_dir):
    """A fresh checkout's view: scripts/ and examples/ of this repository, ../shared beside it."""
    repo = tmp_path / "tfnet"
    repo.mkdir()
    for name in ("scripts", "examples"):
        os.symlink(os.path.join(REPO_ROOT, name), repo / name)
    shutil.copy(os.path.join(REPO_ROOT, README), repo / README)  # bench_all.py --readme writes it
    os.symlink(shared_dir, tmp_path / "shared")
    return repo


def test_the_pages_find_their_commands():
    shown, skipped_anywhere = set(), []
    for page in PAGES:
        steps, skipped = commands(read(page))
        shown |= {os.path.basename(argv[1]) for kind, argv in steps if kind == "bash"}
        skipped_anywhere += skipped
    # Every script is shown on some page (and so run here).
    assert shown == {name for name in os.listdir(os.path.join(REPO_ROOT, "scripts"))
                     if name.endswith(".py")}
    # README shows the install and the main job first, then the tests (the block .ci/run reads).
    steps, skipped = commands(read(README))
    assert steps[0] == ("bash", ["python", "scripts/train.py"])
    test_command = read(README).split("<!-- test-command -->\n```bash\n", 1)[1].split("```")[0]
    assert "pytest" in test_command and any(part in test_command for part, _ in skipped)
    assert any(kind == "python" for kind, _ in steps)


def test_every_page_names_the_main_jobs_run_and_existing_files():
    """Each page names the run directory the main job prints (README's Quickstart shows it), and
    links only to files that exist."""
    for page in PAGES:
        text = read(page)
        for named in re.findall(r"runs/moons-adam-[0-9a-f]{8}", text):
            assert named == main_job_run_dir(), f"{page} names {named}"
        prose = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", prose):
            path = os.path.normpath(os.path.join(REPO_ROOT, os.path.dirname(page), target))
            assert os.path.exists(path), f"{page} links to {target}, which does not exist"


@pytest.mark.parametrize("page", RUNNABLE_PAGES)
def test_every_command_of_the_page_works_in_the_order_written(page, workspace, tmp_path):
    text = read(page)
    steps, _ = commands(text)
    main_job = ("bash", ["python", "scripts/train.py"])
    if needs_main_job(page, text):
        steps = [main_job, *steps]
    planned, shown = zip(*(_planned(kind, step) for kind, step in steps))
    ran = run_forked(list(planned), cwd=workspace, out_dir=str(tmp_path / "out"))
    for i, step in enumerate(planned):
        assert i < len(ran), f"{page} step {i + 1} never ran: {shown[i]}"
        code, stdout, stderr = ran[i]
        assert code in step["allowed"], (
            f"{page} step {i + 1} exited {code}: {shown[i]}\n"
            f"stdout:\n{stdout[-3000:]}\nstderr:\n{stderr[-3000:]}")
        if steps[i] == main_job:  # the run directory the pages name
            assert f"TensorBoard logs: {main_job_run_dir()}" in stdout, stdout
