"""Trials on Ray Tune against the process pool tfnet ran them in before: a search and the study.

    python scripts/bench_trials.py --rounds=2

For a 20-trial search (one round from examples/search_space.json, 20 epochs each) and the
default optimiser study, the pool (a train.py process per search trial; spawned workers for the
study) against tfnet.trials on Ray started on this machine for each run, start-up included, in
alternating rounds; prints Ray's speed-up over the pool per trial; exit status 2 when Ray is
more than 10 percent slower (a missed goal), 1 when a contender crashed.
"""

import os
import sys


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))  # benchmarks/
from tfnet import flags as tfnet_flags  # noqa: E402

tfnet_flags.import_tensorflow_quietly()
from benchmarks import harness, trials  # noqa: E402  (TensorFlow imported quietly first)

tfnet_flags.define_config_flags(trials.TrialsBenchConfig)
harness.define_quick_flag()

if __name__ == "__main__":
    tfnet_flags.run(harness.script_main(trials.run, trials.TrialsBenchConfig, trials.QUICK))
