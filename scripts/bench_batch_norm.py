"""Benchmark: forward+backward time of tfnet's BatchNorm vs keras.layers.BatchNormalization.

    PYTHONPATH=. python scripts/bench_batch_norm.py [--rounds 15] [--iterations 5]

Prints a markdown table of median times and the median ratio ours/Keras per configuration;
exits non-zero if any ratio exceeds --max_ratio.
"""

import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_multi_enum("shape", ["dense", "image"], ["dense", "image"],
                        "Activations to time: dense (256x1024) and/or image (64x32x32x64 NHWC).")
flags.DEFINE_integer("rounds", 15, "Alternating turns per configuration; medians are over these.",
                     lower_bound=1)
flags.DEFINE_integer("iterations", 5, "Calls per contender per turn.", lower_bound=1)
flags.DEFINE_integer("warmup", 3, "Untimed calls per contender before timing.", lower_bound=0)
flags.DEFINE_bool("xla", True, "Also time the jit_compile=True (XLA) variants.")
flags.DEFINE_float("max_ratio", 1.10, "Exit with status 1 if a median ratio ours/Keras exceeds this.")


def main(argv):
    del argv
    from tfnet.layers import benchmark  # after flag parsing: TensorFlow loads slowly

    config = benchmark.BenchmarkConfig(
        shapes=tuple(dict.fromkeys(FLAGS.shape)),
        rounds=FLAGS.rounds,
        iterations=FLAGS.iterations,
        warmup=FLAGS.warmup,
        jit_compile=(False, True) if FLAGS.xla else (False,),
    )
    rows = benchmark.benchmark(config)
    print(benchmark.format_table(rows))
    worst = max(row["ratio"] for row in rows)
    print(f"worst median ratio ours/Keras: {worst:.3f} (goal <= {FLAGS.max_ratio})")
    sys.exit(0 if worst <= FLAGS.max_ratio else 1)


if __name__ == "__main__":
    app.run(main)
