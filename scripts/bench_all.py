"""Runs every benchmark and writes their tables, with every goal and whether it is met, to one page.

    python scripts/bench_all.py --data_dir=../shared/tfds --write=docs/benchmarks.md --readme=README.md
    python scripts/bench_all.py --benchmarks=training,runs --data_dir=../shared/tfds
    python scripts/bench_all.py --quick --write=/tmp/benchmarks.md   # a smoke run of each

Each benchmark (benchmarks/suite.py lists them; each is also scripts/bench_<name>.py) runs in
this process with its defaults, or its small --quick settings. The page (benchmarks.suite.page)
says when, where and under what load the figures were taken. Exit status 0 when every goal is
met, 2 when one is missed (the page is written either way), 1 when a benchmark crashed (nothing
is written).
"""

import datetime
import os
import shlex
import sys


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))  # benchmarks/
from absl import app, flags  # noqa: E402

from benchmarks import harness, suite  # noqa: E402
from tfnet import flags as tfnet_flags  # noqa: E402
from tfnet.config import names_among  # noqa: E402

tfnet_flags.import_tensorflow_quietly()
flags.DEFINE_list("benchmarks", list(suite.BENCHMARKS), "Benchmarks to run, in this order: "
                  + ", ".join(suite.BENCHMARKS) + ".")
flags.DEFINE_string("data_dir", None, "TFDS data directory holding mnist_t10k (the benchmarks "
                    "that need it skip it, with a line, when it is not there).")
flags.DEFINE_string("write", None, "Write the page to this Markdown file (e.g. docs/benchmarks.md)"
                    "; without it the page is only printed.")
flags.DEFINE_string("readme", None, "Also put every goal's row into this file (README.md), in "
                    "place of its block between <!-- benchmark-goals --> and "
                    "<!-- /benchmark-goals -->.")
harness.define_quick_flag()


def _check_benchmarks(names):
    try:
        names_among(*suite.BENCHMARKS)("benchmarks", tuple(names))
    except ValueError as error:
        raise flags.ValidationError(f"--{error}") from None
    return True


def _check_readme(path):
    """Before any benchmark runs: the file exists and has the block the goals go in."""
    if path is None:
        return True
    try:
        with open(path) as f:
            text = f.read()
    except OSError as error:
        raise flags.ValidationError(f"--readme must be a readable file. Received: "
                                    f"--readme={path} ({error.strerror})") from None
    if not all(marker in text for marker in suite.GOALS_MARKERS):
        raise flags.ValidationError(f"--readme must hold a {' ... '.join(suite.GOALS_MARKERS)} "
                                    f"block. Received: --readme={path}")
    return True


flags.register_validator("benchmarks", _check_benchmarks, message="invalid --benchmarks")
flags.register_validator("readme", _check_readme, message="invalid --readme")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    command = " ".join(["python", "scripts/bench_all.py",
                        *(shlex.quote(a) for a in sys.argv[1:])])
    before, date = suite.environment(), datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    sections = suite.run_all(FLAGS.benchmarks, FLAGS.quick, FLAGS.data_dir)
    text = suite.page(sections, command, date, before, suite.environment(), FLAGS.quick)
    print(text)
    if FLAGS.write:
        with open(FLAGS.write, "w") as page:
            page.write(text)
        print(f"written: {FLAGS.write}")
    if FLAGS.readme:
        with open(FLAGS.readme) as f:
            updated = suite.with_goals(f.read(), sections, date, before)
        with open(FLAGS.readme, "w") as f:
            f.write(updated)
        print(f"goals written into: {FLAGS.readme}")
    return harness.exit_status([r for s in sections for r in s.results])


if __name__ == "__main__":
    tfnet_flags.run(main)
