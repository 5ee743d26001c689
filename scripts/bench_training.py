"""Training throughput of tfnet's compiled loop against Keras fit, numpy and the matmul peak.

    python scripts/bench_training.py --data_dir=../shared/tfds
    python scripts/bench_training.py --problems=course,moons --rounds=3

Every contender runs in this one process, in alternating rounds; the table gives each one's
examples per second and tfnet's median speed-up against it (benchmarks/training.py says what
each contender is). Exit status 1 when a goal is missed: tfnet >= 3x numpy on the course net and
the moons MLP; on the mnist_t10k MLP at batch 64, >= 3x Keras fit at its best
steps_per_execution and >= 60 percent of the matmul peak.
"""

import os
import sys


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))  # benchmarks/
from benchmarks import harness, training  # noqa: E402
from tfnet import flags as tfnet_flags  # noqa: E402

tfnet_flags.import_tensorflow_quietly()
tfnet_flags.define_config_flags(training.TrainingBenchConfig)
harness.define_quick_flag()

if __name__ == "__main__":
    tfnet_flags.run(harness.script_main(training.run, training.TrainingBenchConfig, training.QUICK))
