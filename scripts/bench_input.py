"""Does the input work keep up with the training loop? Both timed in the compiled loop.

    python scripts/bench_input.py --data_dir=../shared/tfds

For mnist_t10k and a synthetic CIFAR-sized set, without and with augmentation: one epoch of the
training loop against one epoch of its input work alone (order, gather, augmentation), in
alternating rounds; exit status 2 when the input work takes more than a fifth of the loop, 1
when a contender crashed.
"""

import os
import sys


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))  # benchmarks/
from benchmarks import harness, input  # noqa: E402
from tfnet import flags as tfnet_flags  # noqa: E402

tfnet_flags.import_tensorflow_quietly()
tfnet_flags.define_config_flags(input.InputBenchConfig)
harness.define_quick_flag()

if __name__ == "__main__":
    tfnet_flags.run(harness.script_main(input.run, input.InputBenchConfig,
                                        input.QUICK))
