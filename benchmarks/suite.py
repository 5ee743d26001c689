"""Every benchmark, run one after the other, and the Markdown page of their results.

``BENCHMARKS`` names each benchmark module with its config class and script; ``run_all`` runs
the chosen ones in this process (each with its defaults, or its ``QUICK`` settings, and the
given TFDS directory); ``page`` renders one Markdown page: how and where the figures were taken
(the command, the date, the machine, its load average before and after, the versions), every
goal with its ratio and whether it is met, then each benchmark's table. The page is what
``scripts/bench_all.py --write=docs/benchmarks.md`` writes: its figures come from the run,
never from a hand.
"""

import dataclasses
import importlib
import importlib.metadata
import os
import platform

from benchmarks import harness


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One benchmark: ``module`` has ``run(config, say)``, ``QUICK`` and the class ``config``."""

    name: str
    module: str
    config: str
    script: str

    def load(self):
        """(the module, its config class), imported now."""
        module = importlib.import_module(self.module)
        return module, getattr(module, self.config)


BENCHMARKS = {b.name: b for b in (
    Benchmark("training", "benchmarks.training", "TrainingBenchConfig", "bench_training.py"),
    Benchmark("runs", "benchmarks.runs", "RunsBenchConfig", "bench_runs.py"),
    Benchmark("optimizers", "benchmarks.optimizers", "OptimizersBenchConfig", "bench_optimizers.py"),
    Benchmark("batch_norm", "benchmarks.batch_norm", "BatchNormBenchConfig", "bench_batch_norm.py"),
    Benchmark("input", "benchmarks.input", "InputBenchConfig", "bench_input.py"),
    Benchmark("gradcheck", "benchmarks.gradcheck", "GradcheckBenchConfig", "bench_gradcheck.py"),
    Benchmark("your_data", "benchmarks.your_data", "YourDataBenchConfig", "bench_your_data.py"),
    Benchmark("trials", "benchmarks.trials", "TrialsBenchConfig", "bench_trials.py"),
)}


def config_for(benchmark, quick=False, data_dir=None):
    """The config ``benchmark`` runs with: its defaults, or its ``QUICK`` settings, and
    ``data_dir`` where it takes one."""
    from tfnet import config as config_lib

    module, config_class = benchmark.load()
    values = dict(module.QUICK) if quick else {}
    if "data_dir" in {f.name for f in dataclasses.fields(config_class)}:
        values["data_dir"] = data_dir
    return config_lib.check_fields(config_class(**values))


@dataclasses.dataclass(frozen=True)
class Section:
    """One benchmark's part of the page: its name, its module's summary line, how to run it
    alone, and its results."""

    name: str
    summary: str
    command: str
    results: list


def run_all(names, quick=False, data_dir=None, say=print):
    """Runs the benchmarks ``names`` in order; returns a ``Section`` each. A contender that
    raises is not caught: nothing is returned then."""
    sections = []
    for name in names:
        benchmark = BENCHMARKS[name]
        module, _ = benchmark.load()
        config = config_for(benchmark, quick, data_dir)
        say(f"== {name} ==")
        results = module.run(config, say=say)
        arguments = ([f"--data_dir={data_dir}"] if data_dir and hasattr(config, "data_dir") else [])
        arguments += ["--quick"] if quick else []
        command = " ".join(["python", f"scripts/{benchmark.script}", *arguments])
        sections.append(Section(name, module.__doc__.strip().splitlines()[0], command, results))
    return sections


def environment():
    """What the figures depend on: the machine, its load, the versions (a dict of strings)."""
    versions = []
    for package in ("tensorflow", "keras", "jax", "optax", "numpy"):
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package} not installed")
    return {"cpu": _cpu_model(), "cores": str(os.cpu_count()),
            "load": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
            "python": platform.python_version(), "versions": ", ".join(versions)}


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


GOALS_MARKERS = ("<!-- benchmark-goals -->", "<!-- /benchmark-goals -->")


def with_goals(text, sections, date, before):
    """``text`` (README.md) with the block between ``GOALS_MARKERS`` replaced by every goal of
    ``sections`` and when and where it was measured; ValueError if the markers are missing."""
    start, end = GOALS_MARKERS
    if start not in text or end not in text:
        raise ValueError(f"the page has no {start} ... {end} block for the goals")
    goals = [r for s in sections for r in s.results if r.goal is not None]
    block = (f"{sum(r.met for r in goals)} of {len(goals)} goals met on {date} ({before['cores']} "
             f"CPU cores, load {before['load']}):\n\n{harness.markdown(goals)}\n")
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{block}{end}{rest.split(end, 1)[1]}"


def page(sections, command, date, before, after, quick=False):
    """The Markdown page of ``sections``: how they were taken, the goals, each table.

    Args:
      sections: ``run_all``'s ``Section``s.
      command: the command line that ran them.
      date: when they ran (a string).
      before, after: ``environment()`` before and after the run.
      quick: whether they ran with ``--quick`` (figures of a smoke run, not measurements).
    """
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{command}` on {date}; every figure below comes from that run (rerun the "
        "command to update this page, never edit it by hand).",
        "",
        f"Machine: {before['cpu']}, {before['cores']} cores, Python {before['python']}; "
        f"{before['versions']}. Load average (1, 5, 15 min) {before['load']} before the run and "
        f"{after['load']} after it: the machine is shared, so each benchmark alternates its "
        "contenders round by round and reports medians over rounds of same-round ratios "
        "(`benchmarks/harness.py`).",
        "",
    ]
    if quick:
        lines += ["**--quick**: a smoke run of every contender with tiny settings; its figures "
                  "are not measurements.", ""]
    goals = [r for s in sections for r in s.results if r.goal is not None]
    lines += ["## Goals", "",
              f"{sum(r.met for r in goals)} of {len(goals)} met. \"× against\" is the median "
              "over rounds of the anchor's time over the contender's, in the same round.", "",
              harness.markdown(goals), ""]
    for section in sections:
        lines += [f"## {section.name}", "", section.summary, "", f"    {section.command}", "",
                  harness.markdown(section.results) if section.results else "(nothing ran)", ""]
    return "\n".join(lines)
