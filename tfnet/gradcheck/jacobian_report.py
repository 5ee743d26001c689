"""The Jacobian-check report: three derivatives of every entry, compared pairwise, with a verdict.

Each checked entry of the Jacobian ∂y_m/∂x_j (or, in directional mode, each uᵀ(∂y/∂x)v) has

    reverse:   from reverse mode (tf.GradientTape, a VJP per output row)
    forward:   from forward mode (tf.autodiff.ForwardAccumulator, a JVP per input column)
    numerical: the two-sided difference (y(x + h⁺ e_j) − y(x − h⁻ e_j)) / (h⁺ + h⁻)

and the pairs "reverse vs numerical", "forward vs numerical" and "forward vs reverse" are
compared, overall and per block (one output tensor against one input tensor), as

    relative_difference = ‖a − b‖₂ / max(‖a‖₂ + ‖b‖₂, ‖r‖₂ / t)

over the block's entries, kinks left out, where t is the correct threshold and r the entries'
round-off bounds 16 eps max(1, max|y_q|) / h (see `tfnet.gradcheck.numerics`); the overall
figures have no floor. The verdict is the worst figure of every pair and block.
"""

import dataclasses

PAIRS = (
    ("reverse", "numerical"),
    ("forward", "numerical"),
    ("forward", "reverse"),
)


def pair_name(pair):
    return f"{pair[0]} vs {pair[1]}"


@dataclasses.dataclass(frozen=True)
class JacobianEntry:
    """One checked entry: ∂output[output_index] / ∂input[input_index].

    In directional mode `output_index` is "u3" and `input_index` "v3" for the fourth random
    pair of unit directions (u on the output, v on the input) and the values are uᵀ(∂y/∂x)v.
    `reverse` and `forward` are None when that mode was not checked; `forward_difference` and
    `backward_difference` are the one-sided differences from which kinks are recognised.
    """

    output: str
    output_index: object
    input: str
    input_index: object
    reverse: float
    forward: float
    numerical: float
    forward_difference: float
    backward_difference: float

    @property
    def error(self):
        """The largest difference between any two of reverse, forward and numerical."""
        values = [v for v in (self.reverse, self.forward, self.numerical) if v is not None]
        return max(values) - min(values)


@dataclasses.dataclass(frozen=True)
class BlockDifference:
    """The entries of one output tensor against one input tensor.

    `differences` maps each compared pair's name ("reverse vs numerical", ...) to its relative
    difference over the block's `checked` entries, `kinks` left out; `worst` is the largest.
    """

    output: str
    input: str
    checked: int
    kinks: int
    differences: tuple

    @property
    def worst(self):
        return max((d for _, d in self.differences), default=0.0)


@dataclasses.dataclass(frozen=True)
class JacobianCheckReport:
    """What `check_jacobian` found (or the second-order check of `check_function`).

    Attributes:
        checked: what was checked, and what "reverse" and "forward" mean here (e.g. for a
            Hessian: reverse-over-reverse and forward-over-reverse HVPs).
        mode: "full" (every entry) or "directional" (uᵀJv for random unit u, v per block).
        modes: the autodiff modes compared with the differences: a subset of ("rev", "fwd").
        dtype, epsilon: as in `GradientCheckReport`.
        inputs, outputs: (name, shape) of each input and output tensor.
        differences: (pair name, overall relative difference) for each compared pair.
        blocks: one `BlockDifference` per (output, input), the worst first.
        worst: the k entries with the largest `error`, largest first (kinks left out).
        kinks: the entries at non-differentiable points, never counted as bugs.
        verdict: "correct" (≤ correct_threshold), "suspect" (≤ wrong_threshold) or "wrong",
            from `verdict_difference`.
        verdict_difference: the worst relative difference of every pair, overall and per block
            (and of the second order when it was checked).
        verdict_from: where it is: "<pair>, overall" or "<pair>, d <output> / d <input>".
        disagreeing: the pairs whose worst figure is above the correct threshold: which modes
            disagree.
        correct_threshold, wrong_threshold, threshold_note: as in `GradientCheckReport`.
        notes: why a mode was not checked, or where TensorFlow found no derivative.
        evaluations, vjps, jvps: how many evaluations of the function, VJPs and JVPs were made.
        device, ran_on: as in `GradientCheckReport`.
        second_order: the `JacobianCheckReport` of the second order (order=2), else None.
    """

    checked: str
    mode: str
    modes: tuple
    dtype: str
    epsilon: float
    inputs: tuple
    outputs: tuple
    differences: tuple
    blocks: tuple
    worst: tuple
    kinks: tuple
    verdict: str
    verdict_difference: float
    verdict_from: str
    disagreeing: tuple
    correct_threshold: float
    wrong_threshold: float
    threshold_note: str
    notes: tuple
    evaluations: int
    vjps: int
    jvps: int
    device: str
    ran_on: str
    second_order: object = None

    @property
    def correct(self):
        return self.verdict == "correct"

    @property
    def diagnosis(self):
        """Which mode is wrong, read from the pairs that disagree ("" when none does)."""
        bad = set(self.disagreeing)
        if not bad:
            return ""
        if len(self.differences) < 3:
            return f"{', '.join(sorted(bad))} disagree"
        if bad == {"reverse vs numerical", "forward vs reverse"}:
            return "reverse mode (the VJP) is wrong: forward mode agrees with the differences"
        if bad == {"forward vs numerical", "forward vs reverse"}:
            return "forward mode (the JVP) is wrong: reverse mode agrees with the differences"
        if bad == {"reverse vs numerical", "forward vs numerical"}:
            return (
                "both modes agree with each other, not with the differences: the function's "
                "derivative is wrong in both, or the differences do not resolve it"
            )
        return "all three disagree: " + ", ".join(sorted(bad))

    def __str__(self):
        lines = [
            f"Jacobian check: {self.checked}",
            f"({self.mode}, {self.dtype}, epsilon={self.epsilon:.3g}, {self.evaluations} "
            f"evaluations, {self.vjps} VJPs, {self.jvps} JVPs"
            f"{', on ' + self.device if self.device else ''}; computed on {self.ran_on})",
            "relative difference overall: "
            + ", ".join(f"{name} {d:.3e}" for name, d in self.differences)
            + f"  ->  {self.verdict.upper()}  (the worst figure, {self.verdict_difference:.3e},"
            f" from {self.verdict_from}; correct <= {self.correct_threshold:.1e},"
            f" wrong > {self.wrong_threshold:.1e})",
        ]
        if self.diagnosis:
            lines.append(f"diagnosis: {self.diagnosis}")
        for note in self.notes + ((self.threshold_note,) if self.threshold_note else ()):
            lines.append(f"note: {note}")
        names = [name for name, _ in self.differences]
        width = max(
            [len("d output / d input")] + [len(f"d {b.output} / d {b.input}") for b in self.blocks]
        )
        lines += ["", "per block (worst first):"]
        lines.append(
            f"  {'d output / d input':<{width}} {'checked':>8} {'kinks':>6} "
            + " ".join(f"{name:>22}" for name in names)
        )
        for b in self.blocks:
            lines.append(
                f"  {f'd {b.output} / d {b.input}':<{width}} {b.checked:>8} {b.kinks:>6} "
                + " ".join(f"{d:>22.3e}" for _, d in b.differences)
            )
        lines += _entry_table(f"{len(self.worst)} worst entries:", self.worst)
        if self.kinks:
            lines += _entry_table(
                f"{len(self.kinks)} non-differentiable points (one-sided differences disagree;"
                " not counted):",
                self.kinks,
            )
        if self.second_order is not None:
            lines += ["", "second order:", str(self.second_order)]
        return "\n".join(lines)


def _number(value):
    return f"{'-':>13}" if value is None else f"{value:>13.6e}"


def _entry_table(title, entries):
    if not entries:
        return []
    lines = ["", title]
    lines.append(
        f"  {'output':<20} {'index':<10} {'input':<20} {'index':<10} {'reverse':>13}"
        f" {'forward':>13} {'numerical':>13} {'|error|':>10}"
    )
    for e in entries:
        lines.append(
            f"  {e.output:<20} {str(e.output_index):<10} {e.input:<20} {str(e.input_index):<10}"
            f" {_number(e.reverse)} {_number(e.forward)} {_number(e.numerical)} {e.error:>10.3e}"
        )
    return lines
