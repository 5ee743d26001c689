"""The one report of every check, and the one comparison that fills it.

Every checked entry of a Jacobian ∂y/∂x (a gradient is its 1 × N case: y = J, one block per
variable; a Hessian the Jacobian of a gradient) has a reverse-mode, a forward-mode and a
numerical value (`tfnet.gradcheck.engine`; uᵀ(∂y/∂x)v in directional mode). The pairs "reverse
vs numerical", "forward vs numerical" and "forward vs reverse" are compared overall and per block
(one output tensor against one input tensor) with docs/methods.md §4's

    relative_difference = ‖a − b‖₂ / max(‖a‖₂ + ‖b‖₂, floor)        (0 when that is 0)

with no floor overall and floor = ‖r‖₂ / t per block, where t is the correct threshold and
r_e = 16 unit_e bounds the round-off of one central difference (unit_e = eps max(1, |y_q|) / h_e,
`tfnet.gradcheck.engine`; measured errors of right derivatives are 0.1–10 units). Without the
floor a block whose derivatives are 0 or at round-off level (a bias before BatchNorm) would score
≈ 1 however right it is; with it, differences within round-off never exceed t.

The verdict comes from the worst figure of every pair, overall and per block (and of the second
order with order=2), so a wrong derivative in a block of small derivatives is not diluted by the
large, right ones of the others: "correct" ≤ t, "suspect" ≤ the wrong threshold, "wrong" above.
In float64 these are 1e-7 and 1e-3 (docs/methods.md §4). In another dtype the round-off of y grows
by eps_dtype / eps_float64, so t is multiplied by the square root of that ratio (2.3e-3 in
float32) and the wrong threshold is max(1e-3, 10 t).

An entry is a kink (a non-differentiable point within the step, e.g. a ReLU input within h of 0)
when its one-sided differences disagree and the autodiff value a (reverse, else forward) sides
with one of them:

    |forward − backward| > 1e-3 max(|forward|, |backward|) + 64 unit
    and min(|a − forward|, |a − backward|) < |forward − backward| / 4

For a smooth y, forward − backward ≈ h y'' and a lies half-way between them, so neither condition
is met by a wrong derivative unless |y''| h ≳ 0.4 |a|. Kinks are left out of every figure and
listed on their own.
"""

import dataclasses

import numpy as np

CORRECT_THRESHOLD = 1e-7
WRONG_THRESHOLD = 1e-3
_ROUND_OFF_UNITS = 16
_KINK_NOISE_UNITS = 64
# (name, first derivative, second derivative, the field of its figure in Block and Report)
PAIRS = (
    ("reverse vs numerical", "reverse", "numerical", "relative_difference"),
    ("forward vs numerical", "forward", "numerical", "forward_relative_difference"),
    ("forward vs reverse", "forward", "reverse", "forward_reverse_difference"),
)
_SHORT = {"reverse vs numerical": "rev-num", "forward vs numerical": "fwd-num",
          "forward vs reverse": "fwd-rev"}
MODE_NAMES = {"rev": "reverse", "fwd": "forward"}
# The pairs that disagree (sorted, joined) -> which mode is wrong.
_DIAGNOSES = {
    "forward vs reverse, reverse vs numerical":
        "reverse mode (the VJP) is wrong: forward mode agrees with the differences",
    "forward vs numerical, forward vs reverse":
        "forward mode (the JVP) is wrong: reverse mode agrees with the differences",
    "forward vs numerical, reverse vs numerical":
        "both modes agree with each other, not with the differences: the function's derivative "
        "is wrong in both, or the differences do not resolve it",
}


def relative_difference(a, b, floor=0.0):
    """‖a − b‖₂ / max(‖a‖₂ + ‖b‖₂, floor), 0 when that is 0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denominator = max(np.linalg.norm(a) + np.linalg.norm(b), floor)
    return 0.0 if denominator == 0.0 else float(np.linalg.norm(a - b) / denominator)


def thresholds(dtype):
    """(correct_threshold, wrong_threshold, note) of a check run in numpy-compatible `dtype`."""
    eps, eps64 = np.finfo(dtype).eps, np.finfo(np.float64).eps
    if eps <= eps64:
        return CORRECT_THRESHOLD, WRONG_THRESHOLD, ""
    correct = CORRECT_THRESHOLD * float(np.sqrt(eps / eps64))
    wrong = max(WRONG_THRESHOLD, 10.0 * correct)
    name = np.dtype(dtype).name
    return correct, wrong, (
        f"ran in {name}, not float64: thresholds rescaled from 1e-7 / 1e-3 to {correct:.1e} / "
        f"{wrong:.1e} (x sqrt(eps_{name} / eps_float64))"
    )


@dataclasses.dataclass(frozen=True)
class Entry:
    """One checked entry: ∂output[output_index] / ∂input[input_index].

    For a gradient `output` is "J", `output_index` () and `input` the variable. In directional
    mode `input_index` is "v3" and `output_index` "u3" (or the output's index when it has one
    entry, u = 1) for the fourth pair of random unit directions, and the values are uᵀ(∂y/∂x)v.
    `reverse` and `forward` are None when that mode was not checked; `forward_difference` and
    `backward_difference` are the one-sided differences from which kinks are recognised.
    """

    output: str
    output_index: object
    input: str
    input_index: object
    numerical: float
    forward_difference: float
    backward_difference: float
    reverse: float = None
    forward: float = None

    @property
    def error(self):
        """The largest difference between any two of reverse, forward and numerical."""
        values = [v for v in (self.reverse, self.forward, self.numerical) if v is not None]
        return max(values) - min(values)


@dataclasses.dataclass(frozen=True)
class Block:
    """One output tensor against one input tensor (a variable, for a gradient), kinks left out.

    `name` is the variable's for a gradient, else "d <output> / d <input>"; `shape` is the
    block's: the output's shape followed by the input's. `checked` entries (or directions) were
    compared; the norms are ‖·‖₂ of each derivative over them, `round_off_norm` is ‖r‖₂, and the
    three figures compare the pairs with the floor ‖r‖₂ / correct_threshold. A norm or figure is
    None when its mode was not checked.
    """

    name: str
    output: str
    input: str
    shape: tuple
    checked: int
    kinks: int
    numerical_norm: float
    round_off_norm: float
    reverse_norm: float = None
    forward_norm: float = None
    relative_difference: float = None
    forward_relative_difference: float = None
    forward_reverse_difference: float = None

    @property
    def differences(self):
        """(pair name, relative difference) of each pair compared."""
        return _named(self)

    @property
    def worst(self):
        return max((d for _, d in self.differences), default=0.0)


@dataclasses.dataclass(frozen=True)
class Report:
    """What a check found: `check_gradients`, `check_function`, `check_jacobian`, second order.

    Attributes:
        checked: what was checked, and what "reverse" and "forward" mean there (for a Hessian:
            reverse-over-reverse and forward-over-reverse).
        mode: "full", "sampled" or "directional".
        modes: the autodiff modes compared with the differences: those asked for that TensorFlow
            could compute, in ("rev", "fwd") order.
        dtype: the dtype the check ran in ("float64", or "float32" where float64 is unavailable).
        epsilon: the relative step: component i is moved by h_i = epsilon * max(1, |θ_i|).
        inputs, outputs: (name, shape) of each input (variable) and output tensor.
        cost: J at θ for a gradient (`check_gradients`, `check_function`); None for a Jacobian.
        relative_difference, forward_relative_difference, forward_reverse_difference: the
            overall figures of reverse vs numerical, forward vs numerical and forward vs reverse
            (kinks left out, no floor); None for a mode not checked.
        blocks: one `Block` per (output, input), per variable for a gradient, the worst first.
        worst: the k_worst entries with the largest `error`, largest first (kinks left out).
        kinks: the entries at non-differentiable points, never counted as bugs.
        verdict: "correct" (≤ correct_threshold), "suspect" (≤ wrong_threshold) or "wrong", from
            `verdict_difference`.
        verdict_difference: the worst figure of every pair, overall and per block (and of the
            second order when it was checked).
        verdict_from: where it is: "<pair>, overall" or "<pair>, <block name>", preceded by
            "second order: " when it is the second order's.
        disagreeing: the pairs whose worst figure is above the correct threshold.
        correct_threshold, wrong_threshold: 1e-7 and 1e-3 in float64, rescaled otherwise.
        notes: how the thresholds were rescaled, why a mode was not checked, where TensorFlow
            found no derivative.
        evaluations, vjps, jvps: how many evaluations of the function (2 at θ, 2 per probe),
            VJPs (reverse-mode rows) and JVPs were made.
        device: the device asked for, by `device=` or the strategy ("" for TensorFlow's default
            placement).
        ran_on: the devices the results were computed on, read from the returned tensors.
        second_order: the `Report` of the second order (order=2), else None.
    """

    checked: str
    mode: str
    modes: tuple
    dtype: str
    epsilon: float
    inputs: tuple
    outputs: tuple
    cost: float
    relative_difference: float
    forward_relative_difference: float
    forward_reverse_difference: float
    blocks: tuple
    worst: tuple
    kinks: tuple
    verdict: str
    verdict_difference: float
    verdict_from: str
    disagreeing: tuple
    correct_threshold: float
    wrong_threshold: float
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
    def differences(self):
        """(pair name, overall relative difference) of each pair compared."""
        return _named(self)

    @property
    def diagnosis(self):
        """Which mode is wrong, read from the pairs that disagree ("" when none does)."""
        bad = ", ".join(sorted(self.disagreeing))
        if not bad or len(self.differences) < 3:
            return bad and f"{bad} disagree"
        return _DIAGNOSES.get(bad, f"all three disagree: {bad}")

    def __str__(self):
        gradient = self.cost is not None
        derivatives = [MODE_NAMES[m] for m in self.modes] + ["numerical"]
        lines = [
            f"{'Gradient' if gradient else 'Jacobian'} check: {self.checked}",
            f"({self.mode}, {self.dtype}, epsilon={self.epsilon:.3g}, {self.evaluations} "
            f"evaluations, {_count(self.vjps, 'VJP')}, {_count(self.jvps, 'JVP')}"
            f"{', on ' + self.device if self.device else ''}; computed on {self.ran_on})",
        ] + ([f"J = {self.cost:.10g}"] if gradient else []) + [
            "relative difference overall: "
            + ", ".join(f"{name} {d:.3e}" for name, d in self.differences)
            + f"  ->  {self.verdict.upper()}  (the worst figure, {self.verdict_difference:.3e},"
            f" from {self.verdict_from}; correct <= {self.correct_threshold:.1e},"
            f" wrong > {self.wrong_threshold:.1e})",
        ]
        lines += [f"diagnosis: {self.diagnosis}"] if self.diagnosis else []
        lines += [f"note: {note}" for note in self.notes]
        label = "variable" if gradient else "d output / d input"
        width = max([len(label)] + [len(b.name) for b in self.blocks])
        lines += ["", f"per {'variable' if gradient else 'block'} (worst first):",
                  f"  {label:<{width}}  {'shape':<14} {'checked':>8} {'kinks':>6}"
                  + "".join(f" {'|' + d + '|':>11}" for d in derivatives)
                  + "".join(f" {_SHORT[name]:>10}" for name, _ in self.differences)]
        for b in self.blocks:
            lines.append(
                f"  {b.name:<{width}}  {str(b.shape):<14} {b.checked:>8} {b.kinks:>6}"
                + "".join(f" {getattr(b, d + '_norm'):>11.4e}" for d in derivatives)
                + "".join(f" {d:>10.3e}" for _, d in b.differences)
            )
        lines += _entry_table(f"{len(self.worst)} worst entries:", self.worst, derivatives,
                              gradient)
        lines += _entry_table(
            f"{len(self.kinks)} non-differentiable points (one-sided differences disagree;"
            " not counted):", self.kinks, derivatives, gradient)
        if self.second_order is not None:
            lines += ["", "second order:", str(self.second_order)]
        return "\n".join(lines)


def _count(number, noun):
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _named(figures):
    return tuple((name, getattr(figures, field)) for name, _, _, field in PAIRS
                 if getattr(figures, field) is not None)


def _entry_table(title, entries, derivatives, gradient):
    if not entries:
        return []
    where = "variable" if gradient else "input"
    lines = ["", title, ("  " if gradient else f"  {'output':<20} {'index':<10} ")
             + f"{where:<28} {'index':<14}" + "".join(f" {d:>13}" for d in derivatives)
             + f" {'|error|':>10} {'one-sided +h':>13} {'one-sided -h':>13}"]
    for e in entries:
        lines.append(
            ("  " if gradient else f"  {e.output:<20} {str(e.output_index):<10} ")
            + f"{e.input:<28} {str(e.input_index):<14}"
            + "".join(f" {getattr(e, d):>13.6e}" for d in derivatives)
            + f" {e.error:>10.3e} {e.forward_difference:>13.6e} {e.backward_difference:>13.6e}"
        )
    return lines


def compare(derivatives, forward_difference, backward_difference, unit, block_of, blocks,
            entry, k_worst, dtype):
    """The `Report` fields of the comparison: figures, blocks, worst entries, kinks, verdict.

    Args:
        derivatives: {"numerical": ..., "reverse": ..., "forward": ...} (the modes computed),
            each a flat float64 array over the checked entries.
        forward_difference, backward_difference, unit: each entry's one-sided differences and
            round-off unit.
        block_of: each entry's block, an index into `blocks`, (name, output, input, shape) each.
        entry: entry(e) gives the (output, output_index, input, input_index) of entry e.
        k_worst: how many worst entries to list.
        dtype: the dtype the check ran in (its thresholds).
    """
    autodiff = derivatives.get("reverse", derivatives.get("forward"))
    jump = np.abs(forward_difference - backward_difference)
    is_kink = (
        jump > 1e-3 * np.maximum(np.abs(forward_difference), np.abs(backward_difference))
        + _KINK_NOISE_UNITS * unit
    ) & (np.minimum(np.abs(autodiff - forward_difference),
                    np.abs(autodiff - backward_difference)) < jump / 4)
    smooth = ~is_kink
    round_off = _ROUND_OFF_UNITS * unit
    correct_threshold, wrong_threshold, note = thresholds(dtype)
    pairs = [(name, a, b, field) for name, a, b, field in PAIRS
             if a in derivatives and b in derivatives]

    def figures(where, floor):
        return {field: relative_difference(derivatives[a][where], derivatives[b][where], floor)
                for _, a, b, field in pairs}

    overall = figures(smooth, 0.0)
    candidates = [(overall[field], f"{name}, overall") for name, _, _, field in pairs]
    checked = []
    for number, (name, output, input_, shape) in enumerate(blocks):
        in_block = block_of == number
        mine = in_block & smooth
        round_off_norm = float(np.linalg.norm(round_off[mine]))
        block = Block(
            name=name, output=output, input=input_, shape=shape, checked=int(mine.sum()),
            kinks=int((in_block & is_kink).sum()), round_off_norm=round_off_norm,
            **{f"{d}_norm": float(np.linalg.norm(values[mine]))
               for d, values in derivatives.items()},
            **figures(mine, round_off_norm / correct_threshold),
        )
        candidates += [(d, f"{pair}, {name}") for pair, d in block.differences]
        checked.append(block)
    checked.sort(key=lambda b: -b.worst)
    difference, where = max(candidates, key=lambda c: c[0])  # ties: the first listed
    errors = np.max([np.abs(derivatives[a] - derivatives[b]) for _, a, b, _ in pairs], axis=0)

    def listed(e):
        return Entry(
            *entry(e), forward_difference=float(forward_difference[e]),
            backward_difference=float(backward_difference[e]),
            **{d: float(values[e]) for d, values in derivatives.items()},
        )

    order = np.argsort(-np.where(smooth, errors, -1.0), kind="stable")[:k_worst]
    return dict(
        **{field: overall.get(field) for *_, field in PAIRS},
        blocks=tuple(checked),
        worst=tuple(listed(e) for e in order if smooth[e]),
        kinks=tuple(listed(e) for e in np.flatnonzero(is_kink)),
        verdict=("correct" if difference <= correct_threshold
                 else "suspect" if difference <= wrong_threshold else "wrong"),
        verdict_difference=difference, verdict_from=where,
        disagreeing=tuple(
            name for name, _, _, field in pairs
            if max([overall[field]] + [getattr(b, field) for b in checked]) > correct_threshold
        ),
        correct_threshold=correct_threshold,
        wrong_threshold=wrong_threshold,
    ), note
