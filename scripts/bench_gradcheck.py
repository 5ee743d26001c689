"""The gradient checker against tf.test.compute_gradient, and its directional check at scale.

    python scripts/bench_gradcheck.py
    python scripts/bench_gradcheck.py --rounds=5 --noinclude_eager

The full check of a ~7,000-parameter MLP against compute_gradient given a tf.function and given
a plain function, and the full check's perturbed evaluations alone (what no cut of fixed cost
can remove); then the directional check of a ~1,000,000-parameter MLP against a 5 s deadline.
All float64, in one process, in alternating rounds. Exit status 2 when a goal is missed: the full
check >= 20x faster than compute_gradient given a tf.function; the directional check under 5 s;
1 when a contender crashed.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))  # benchmarks/
from benchmarks import gradcheck, harness  # noqa: E402
from tfnet import flags as tfnet_flags  # noqa: E402

tfnet_flags.import_tensorflow_quietly()
tfnet_flags.define_config_flags(gradcheck.GradcheckBenchConfig)
harness.define_quick_flag()

if __name__ == "__main__":
    tfnet_flags.run(harness.script_main(gradcheck.run, gradcheck.GradcheckBenchConfig,
                                        gradcheck.QUICK))
