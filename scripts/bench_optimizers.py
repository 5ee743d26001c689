"""Per-step time of each of tfnet's optimisers against its Keras twin, with and without XLA.

Alternates the two in one process over many rounds and prints the median ratio ours / Keras
(goal: <= 1.05). Example:

  python scripts/bench_optimizers.py --rounds=40
"""

import sys

from absl import app, flags

from tfnet.optimizers import benchmark

FLAGS = flags.FLAGS
defaults = benchmark.BenchConfig()
flags.DEFINE_list("optimizers", [ours for ours, _ in benchmark.PAIRS], "Which of ours to time (each against its Keras twin).")
flags.DEFINE_integer("rounds", defaults.rounds, "Alternations per pair and mode.", lower_bound=1)
flags.DEFINE_integer("steps_per_round", defaults.steps_per_round, "Steps timed per contender per round.", lower_bound=1)
flags.DEFINE_integer("batch_size", defaults.batch_size, "Examples per step.", lower_bound=1)
flags.DEFINE_list("hidden_units", [str(u) for u in defaults.hidden_units], "Units of each hidden layer of the MLP.")
flags.DEFINE_enum("jit_compile", "both", ["both", "on", "off"], "Time with XLA, without, or both.")
flags.DEFINE_float("max_ratio", 1.05, "Exit non-zero if a median ratio is above this.", lower_bound=0)
flags.register_validator("optimizers", lambda names: set(names) <= {ours for ours, _ in benchmark.PAIRS},
                         message="--optimizers must be among gd, momentum, rmsprop, adam")
flags.register_validator("hidden_units", lambda units: all(u.isdigit() and int(u) > 0 for u in units),
                         message="--hidden_units must be positive integers")


def main(argv):
    del argv
    modes = {"both": (False, True), "on": (True,), "off": (False,)}[FLAGS.jit_compile]
    config = benchmark.BenchConfig(
        pairs=tuple(pair for pair in benchmark.PAIRS if pair[0] in FLAGS.optimizers), jit_compile=modes, hidden_units=tuple(int(u) for u in FLAGS.hidden_units),
        batch_size=FLAGS.batch_size, rounds=FLAGS.rounds, steps_per_round=FLAGS.steps_per_round,
    )
    results = benchmark.benchmark(config)
    print(benchmark.format_table(results))
    return 0 if all(r.ratio <= FLAGS.max_ratio for r in results) else 1


if __name__ == "__main__":
    sys.exit(app.run(main))
