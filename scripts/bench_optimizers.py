"""Per-step time of each of tfnet's optimisers against its Keras twin, in the real training step.

    python scripts/bench_optimizers.py --rounds=40

Alternates the two in one process, with and without XLA, and prints ours' median speed-up over
the twin; exit status 2 when one is more than 5 percent slower (a speed-up below 1/1.05), 1 when a
contender crashed.
"""

import os
import sys


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))  # benchmarks/
from tfnet import flags as tfnet_flags  # noqa: E402

tfnet_flags.import_tensorflow_quietly()
from benchmarks import harness, optimizers  # noqa: E402  (TensorFlow imported quietly first)

tfnet_flags.define_config_flags(optimizers.OptimizersBenchConfig)
harness.define_quick_flag()

if __name__ == "__main__":
    tfnet_flags.run(harness.script_main(optimizers.run, optimizers.OptimizersBenchConfig,
                                        optimizers.QUICK))
