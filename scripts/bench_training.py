"""Training throughput of tfnet's compiled loop against Keras fit, JAX, numpy and the matmul peak.

    python scripts/bench_training.py --data_dir=../shared/tfds
    python scripts/bench_training.py --problems=course,moons --rounds=3
    python scripts/bench_training.py --quick          # a smoke run of every contender

Every contender runs in this one process, in alternating rounds; the table gives each one's
examples per second and tfnet's median speed-up against it (benchmarks/training.py says what
each contender is; the JAX + Optax one needs the bench extra, pip install -e .[bench], and is
skipped with a line without it). Exit status 2 when a goal is missed: tfnet >= 3x numpy on the
course net and the moons MLP; on the mnist_t10k MLP at batch 64, each at its best setting,
>= 2.5x Keras fit, >= 1.0x JAX + Optax and >= 60 percent of the matmul peak; 1 when a contender
crashed.
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
    tfnet_flags.run(harness.script_main(training.run, training.TrainingBenchConfig,
                                        training.QUICK))
