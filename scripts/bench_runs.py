"""Whole runs as a user meets them: the main job, a default mnist run against Keras, the course net.

    python scripts/bench_runs.py --data_dir=../shared/tfds
    python scripts/bench_runs.py --benchmarks=main_job --rounds=5

The main job (python scripts/train.py) as one whole process against a 4 s deadline; a default
15-epoch mnist_t10k MLP run (scripts/train.py, whole process) against Keras fit with its defaults
and the dev split as validation_data (whole process, the same data loading); the course net
2-5-2-2 as a whole run with its logging against the course's float64 numpy implementation
(benchmarks/runs.py says what each contender is). Alternating rounds; exit status 2 when a goal
is missed (the main job <= 4 s; mnist >= 2x Keras fit; the course net >= 3x numpy), 1 when a
contender crashed.
"""

import os
import sys


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))  # benchmarks/
from benchmarks import harness, runs  # noqa: E402
from tfnet import flags as tfnet_flags  # noqa: E402

tfnet_flags.import_tensorflow_quietly()
tfnet_flags.define_config_flags(runs.RunsBenchConfig)
harness.define_quick_flag()

if __name__ == "__main__":
    tfnet_flags.run(harness.script_main(runs.run, runs.RunsBenchConfig, runs.QUICK))
