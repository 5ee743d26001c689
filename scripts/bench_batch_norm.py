"""Forward+backward time of tfnet's BatchNorm against keras.layers.BatchNormalization.

    python scripts/bench_batch_norm.py --rounds=15

Alternates the two in one process per configuration (shape, training or inference, XLA or not)
and prints ours' median speed-up over Keras; exit status 2 when one is more than 10 percent
slower, 1 when a contender crashed.
"""

import os
import sys


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))  # benchmarks/
from benchmarks import harness, batch_norm  # noqa: E402
from tfnet import flags as tfnet_flags  # noqa: E402

tfnet_flags.import_tensorflow_quietly()
tfnet_flags.define_config_flags(batch_norm.BatchNormBenchConfig)
harness.define_quick_flag()

if __name__ == "__main__":
    tfnet_flags.run(harness.script_main(batch_norm.run, batch_norm.BatchNormBenchConfig,
                                        batch_norm.QUICK))
