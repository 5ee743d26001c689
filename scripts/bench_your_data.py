"""Your model, your data: a CNN against Keras, a streamed split against one in memory, memory.

    python scripts/bench_your_data.py --data_dir=../shared/tfds
    python scripts/bench_your_data.py --benchmarks=memory --memory_gb=2

The CNN (--model=cnn --conv_filters=32,64 --batch_norm, b=64) against Keras fit at its best
settings, and its test accuracy after a whole 10-epoch run; the mnist_t10k MLP with its training
split streamed from a file against the same in memory; the peak memory of training on a 100 MB
and a multi-GB .npz file (benchmarks/your_data.py says what each contender is). Alternating
rounds; exit status 2 when a goal is missed (CNN test accuracy >= 0.98 and >= 1.2x Keras; streaming >= 0.8x;
the big file's peak within 200 MB of the small one's and under 1,500 MB), 1 when a contender
crashed.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))  # benchmarks/
from benchmarks import harness, your_data  # noqa: E402
from tfnet import flags as tfnet_flags  # noqa: E402

tfnet_flags.import_tensorflow_quietly()
tfnet_flags.define_config_flags(your_data.YourDataBenchConfig)
harness.define_quick_flag()

if __name__ == "__main__":
    tfnet_flags.run(harness.script_main(your_data.run, your_data.YourDataBenchConfig,
                                        your_data.QUICK))
