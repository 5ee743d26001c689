"""Benchmark of tfnet.gradcheck: full check vs tf.test.compute_gradient, and a directional check.

    python scripts/bench_gradcheck.py
    python scripts/bench_gradcheck.py --repeats=5 --small_layers=50,80,30,10

Goals (issue 5): the full check >= 20x faster than tf.test.compute_gradient at ~7,000 parameters
(both float64, one process), and the directional check of a 1,000,000-parameter MLP under 5 s.
"""

from absl import app, flags

from tfnet.gradcheck import benchmark

_SMALL = flags.DEFINE_list(
    "small_layers", ["50", "80", "30", "10"], "Layer sizes of the ~7,000-parameter MLP."
)
_LARGE = flags.DEFINE_list(
    "large_layers", ["784", "1024", "192", "10"], "Layer sizes of the ~1,000,000-parameter MLP."
)
_BATCH = flags.DEFINE_integer("batch", 16, "Examples in the batch J is computed on.", lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs of each contender.", lower_bound=1)
_DIRECTIONS = flags.DEFINE_integer(
    "num_directions", 4, "Random directions per variable in the directional check.", lower_bound=1
)


def main(argv):
    del argv
    small = benchmark.full_check_against_compute_gradient(
        [int(n) for n in _SMALL.value], _BATCH.value, _REPEATS.value
    )
    print(f"full check, {small['parameters']} parameters, batch {_BATCH.value}, float64:")
    for name, times in small["times"].items():
        print(f"  {name:<30} median {small['medians'][name]:8.3f} s   runs {[round(t, 3) for t in times]}")
    print(f"  ratio compute_gradient (eager) / ours:       {small['ratio_eager']:.1f}x")
    print(f"  ratio compute_gradient (tf.function) / ours: {small['ratio_tf_function']:.1f}x")
    print(f"  ratio compute_gradient (tf.function) / our evaluations alone (the bound): "
          f"{small['ratio_tf_function_bound']:.1f}x")
    print(f"  our relative difference {small['relative_difference']:.2e}; compute_gradient's "
          f"{small['compute_gradient_relative_difference']:.2e}")
    large = benchmark.directional_check(
        [int(n) for n in _LARGE.value], _BATCH.value, _DIRECTIONS.value, _REPEATS.value
    )
    print(f"directional check, {large['parameters']} parameters, {large['evaluations']} "
          f"evaluations of J: median {large['median']:.3f} s, runs "
          f"{[round(t, 3) for t in large['times']]}, relative difference "
          f"{large['relative_difference']:.2e} ({large['verdict']})")


if __name__ == "__main__":
    app.run(main)
