"""One harness for every benchmark: contenders timed in alternating rounds, median speed-ups, goals.

A benchmark names its contenders, each a function that does one round of work and returns the
seconds it took per unit of that work (a step, an example, a check). ``measure`` runs the
untimed warm-up rounds (tracing, compiling, caches), then ``rounds`` timed rounds in which every
contender runs once, in the given order in even rounds and in the reverse order in odd ones, so
that a slow phase of a shared machine, or whatever runs first or last in a round, hits every
contender alike. ``result`` compares a contender with an anchor by the median over rounds of
their ratio in the same round (never by a ratio of medians), and checks it against a goal:

    speed-up = median_r ( anchor seconds per unit_r / contender seconds per unit_r )

A goal is the least speed-up accepted: 3 for "three times as fast", 1/1.05 for "at most 5 %
slower". ``markdown`` renders results as one table; ``exit_status`` is ``GOAL_MISSED`` (2) when a
goal is missed, so that a benchmark that ran and missed a goal is told apart from one that
crashed: a contender that raises is never caught here, and the script exits 1 with its traceback.

Every benchmark module offers ``QUICK``, the settings of a run small enough for a test (every
contender still runs, a round or so each); a script's ``--quick`` applies them to the flags not
given on the command line.
"""

import dataclasses
import statistics
import sys
import time
from typing import Callable


@dataclasses.dataclass(frozen=True)
class Contender:
    """``run()`` does one round of work and returns its seconds per unit (it must wait for the
    work to finish, e.g. by reading a result back to the host)."""

    name: str
    run: Callable[[], float]


def timed(work, units):
    """Seconds per unit of ``work()``, which does ``units`` units and waits for them."""
    start = time.perf_counter()
    work()
    return (time.perf_counter() - start) / units


def measure(contenders, rounds, warmup_rounds=1):
    """``{name: [seconds per unit, one per timed round]}`` of alternating rounds (see above)."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1. Received: rounds={rounds}")
    if warmup_rounds < 0:
        raise ValueError(f"warmup_rounds must be >= 0. Received: warmup_rounds={warmup_rounds}")
    names = [c.name for c in contenders]
    if len(set(names)) != len(names):
        raise ValueError(f"contender names must differ. Received: {names}")
    for contender in contenders * warmup_rounds:
        contender.run()
    timings = {name: [] for name in names}
    for round_index in range(rounds):
        order = contenders if round_index % 2 == 0 else contenders[::-1]
        for contender in order:
            timings[contender.name].append(contender.run())
    return timings


@dataclasses.dataclass(frozen=True)
class Result:
    """One contender against its anchor.

    Attributes:
      benchmark: what was measured (the problem and its size).
      contender: the contender's name.
      anchor: the name of what it is compared with.
      seconds: the contender's median seconds per ``unit``.
      unit: the unit of work ("step", "example", "check", ...).
      speedup: the median over rounds of anchor seconds / contender seconds in the same round.
      goal: the least speed-up accepted, or None when there is no goal.
    """

    benchmark: str
    contender: str
    anchor: str
    seconds: float
    unit: str
    speedup: float
    goal: float = None

    @property
    def met(self):
        return self.goal is None or self.speedup >= self.goal


def result(benchmark, timings, contender, anchor, unit, goal=None):
    """The ``Result`` of ``contender`` against ``anchor`` from ``measure``'s timings."""
    ratios = [a / c for a, c in zip(timings[anchor], timings[contender], strict=True)]
    return Result(benchmark, contender, anchor, statistics.median(timings[contender]), unit,
                  statistics.median(ratios), goal)


@dataclasses.dataclass(frozen=True)
class Figure:
    """A measured figure that is not a speed (an accuracy, a memory peak), against its goal.

    Attributes:
      benchmark: what was measured.
      name: the figure's name.
      value: its value, in ``unit``.
      unit: "%", "MB", ...
      goal: the bound the value must reach, or None.
      at_most: whether ``goal`` is an upper bound (memory) rather than a lower one (accuracy).
    """

    benchmark: str
    name: str
    value: float
    unit: str
    goal: float = None
    at_most: bool = False

    @property
    def met(self):
        if self.goal is None:
            return True
        return self.value <= self.goal if self.at_most else self.value >= self.goal


def format_seconds(seconds):
    """``seconds`` to three significant digits in the unit that reads best: "17.2 µs",
    "1.34 ms", "2.1 s" (rounded first, so 999.96 µs reads "1 ms")."""
    for scale, unit in ((1e-6, "µs"), (1e-3, "ms")):
        value = float(f"{seconds / scale:.3g}")
        if value < 1000:
            return f"{value:g} {unit}"
    return f"{float(f'{seconds:.3g}'):g} s"


def format_rate(per_second):
    """Units per second: whole numbers with thousands separators from 100 on ("140,842"), three
    significant digits below ("0.131", "12.5")."""
    return f"{per_second:,.0f}" if per_second >= 100 else f"{per_second:.3g}"


def markdown(results):
    """The results as Markdown: a table of speeds (``Result``s), then one of other figures
    (``Figure``s), if any."""
    speeds = [r for r in results if isinstance(r, Result)]
    figures = [r for r in results if isinstance(r, Figure)]
    tables = [_speed_table(speeds)] if speeds else []
    if figures:
        lines = ["| benchmark | figure | value | goal | met |", "| --- | --- | ---: | ---: | --- |"]
        for f in figures:
            goal = "" if f.goal is None else f"{'≤' if f.at_most else '≥'} {f.goal:g} {f.unit}"
            met = "" if f.goal is None else ("yes" if f.met else "**no**")
            lines.append(f"| {f.benchmark} | {f.name} | {f.value:,.4g} {f.unit} | {goal} | {met} |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def _speed_table(results):
    lines = ["| benchmark | contender | against | time per unit | per second | × against | goal | met |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        goal = "" if r.goal is None else f"≥ {r.goal:.3g}"
        met = "" if r.goal is None else ("yes" if r.met else "**no**")
        lines.append(f"| {r.benchmark} | {r.contender} | {r.anchor} | {format_seconds(r.seconds)} "
                     f"/ {r.unit} | {format_rate(1 / r.seconds)} | {r.speedup:.3g} | {goal} "
                     f"| {met} |")
    return "\n".join(lines)


# A benchmark script's exit status when it ran to the end and missed a goal (a crash exits 1).
GOAL_MISSED = 2


def exit_status(results):
    """0 when every goal is met, ``GOAL_MISSED`` otherwise (what a benchmark script returns)."""
    return 0 if all(r.met for r in results) else GOAL_MISSED


def define_quick_flag(flag_values=None):
    """Defines ``--quick`` as a flag of the running script (which calls it beside
    ``define_config_flags``), so that its ``--help`` lists it."""
    from absl import flags

    flags.DEFINE_bool("quick", False, "A run small enough for a test: the benchmark's QUICK "
                      "settings for every flag not given.",
                      flag_values=flags.FLAGS if flag_values is None else flag_values,
                      module_name=sys.argv[0])


def config_from_flags(config_class, quick, flag_values=None):
    """``config_class`` from the parsed flags, with ``quick``'s settings (a benchmark's
    ``QUICK``) for the flags not given on the command line when ``--quick`` is."""
    from absl import flags

    from tfnet import flags as tfnet_flags

    flag_values = flags.FLAGS if flag_values is None else flag_values
    overrides = {}
    if flag_values["quick"].value:
        overrides = {name: value for name, value in quick.items()
                     if not flag_values[name].present}
    return tfnet_flags.config_from_flags(config_class, flag_values, **overrides)


def script_main(run, config_class, quick):
    """The ``main(argv)`` of a ``scripts/bench_*.py``: the config from its flags (defined with
    ``tfnet.flags.define_config_flags(config_class)`` and ``define_quick_flag``), ``run(config)``,
    the table, the status (``exit_status``; an exception raised by a contender propagates)."""

    def main(argv):
        from absl import app

        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        results = run(config_from_flags(config_class, quick))
        print(markdown(results))
        return exit_status(results)

    return main
