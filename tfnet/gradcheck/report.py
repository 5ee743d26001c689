"""The gradient-check report: relative differences, a verdict, and where it went wrong.

The overall figure is docs/methods.md §4's

    relative_difference = ‖dθ_approx − dθ‖₂ / (‖dθ_approx‖₂ + ‖dθ‖₂)        (0 when both are 0)

over all checked components. Each variable's figure is the same over its own components, with
the denominator floored at the round-off the numerical derivatives can carry:

    relative_difference_v = ‖dθ_approx,v − dθ_v‖₂ / max(‖dθ_approx,v‖₂ + ‖dθ_v‖₂, ‖r_v‖₂ / t)

where t is the correct threshold and r_i = 16 eps max(1, |J|) / h_i is a bound on the round-off
of one central difference (16 times the unit that J's round-off eps |J| gives over a step h_i;
measured errors of correct gradients are 0.1–10 units). Without the floor a variable whose
gradient is 0 or at round-off level (a bias before BatchNorm) would score ≈ 1 however right its
gradient is; with it, differences within round-off never exceed t.

The verdict comes from the worst of the overall and the per-variable figures, so a wrong gradient
of a variable with small gradients is not diluted by the large, right gradients of the others.
With forward mode checked, the same figures of the JVPs against dθ_approx and against dθ join
them; with order=2, so does the worst figure of the Hessian check (`second_order`, a
`JacobianCheckReport`). Kinks are left out of every figure and listed on their own.
"""

import dataclasses

import numpy as np


def relative_difference(numerical, autodiff, floor=0.0):
    """‖numerical − autodiff‖₂ / max(‖numerical‖₂ + ‖autodiff‖₂, floor), 0 when that is 0."""
    numerical = np.asarray(numerical, dtype=np.float64)
    autodiff = np.asarray(autodiff, dtype=np.float64)
    denominator = max(np.linalg.norm(numerical) + np.linalg.norm(autodiff), floor)
    if denominator == 0.0:
        return 0.0
    return float(np.linalg.norm(numerical - autodiff) / denominator)


@dataclasses.dataclass(frozen=True)
class VariableDifference:
    """One variable's comparison: `checked` components (or directions), kinks left out.

    `relative_difference` (reverse mode against the differences) has its denominator floored at
    `round_off_norm / correct_threshold` (see the module docstring); `round_off_norm` is ‖r_v‖₂.
    With forward mode checked, `jvp_norm` is ‖jvp_v‖₂, `forward_relative_difference` compares the
    JVPs with the differences and `forward_reverse_difference` with reverse mode, with the same
    floor; all three are None otherwise.
    """

    name: str
    shape: tuple
    checked: int
    kinks: int
    autodiff_norm: float
    numerical_norm: float
    round_off_norm: float
    relative_difference: float
    jvp_norm: float = None
    forward_relative_difference: float = None
    forward_reverse_difference: float = None


@dataclasses.dataclass(frozen=True)
class Component:
    """One checked component (or direction) of one variable.

    `index` is the component's index in the variable (a tuple), or `"u3"` for the fourth random
    direction in `directional` mode. `forward` and `backward` are the one-sided differences
    (J(θ+h) − J(θ))/h and (J(θ) − J(θ−h))/h from which kinks are recognised. `autodiff` is the
    reverse-mode gradient; `jvp` the forward-mode one (None unless forward mode was checked).
    """

    variable: str
    index: object
    autodiff: float
    numerical: float
    forward: float
    backward: float
    jvp: float = None

    @property
    def error(self):
        """The largest difference between any two of autodiff, jvp and numerical."""
        values = [self.autodiff, self.numerical] + ([] if self.jvp is None else [self.jvp])
        return max(values) - min(values)


@dataclasses.dataclass(frozen=True)
class GradientCheckReport:
    """What `check_gradients` / `check_function` found.

    Attributes:
        mode: "full", "sampled" or "directional".
        modes: the autodiff modes checked: ("rev",) or ("rev", "fwd").
        dtype: the dtype the check ran in ("float64", or "float32" where float64 is unavailable).
        epsilon: the relative step; component i is moved by h_i = epsilon * max(1, |θ_i|).
        cost: J at the unperturbed θ.
        relative_difference: the overall figure of reverse mode (kinks left out).
        verdict: from `verdict_difference`: "correct" (≤ correct_threshold), "suspect"
            (≤ wrong_threshold) or "wrong".
        verdict_difference: the worst of the overall and the per-variable relative differences
            (of every mode checked, and of the second order when it was checked).
        verdict_from: where that worst figure is: "overall", or a variable's name (reverse mode),
            "forward vs numerical, <where>" or "forward vs reverse, <where>", or
            "second order: <where>".
        correct_threshold, wrong_threshold: 1e-7 and 1e-3 in float64, rescaled otherwise.
        threshold_note: how the thresholds were rescaled ("" in float64).
        variables: one `VariableDifference` per variable, the largest relative difference first.
        worst: the k components with the largest |autodiff − numerical|, largest first.
        kinks: the components at non-differentiable points, never counted as bugs.
        evaluations: how many times J was evaluated.
        device: the device asked for, by `device=` or the strategy ("" for TensorFlow's default
            placement).
        ran_on: the devices that the results (J, its gradient and the perturbed J) were
            computed on, read from the returned tensors, comma-separated.
        forward_relative_difference: forward mode (JVPs) against the differences, overall; None
            unless forward mode was checked.
        forward_reverse_difference: forward against reverse mode, overall; None likewise.
        forward_note: why forward mode was not checked, or where TensorFlow found no JVP ("").
        second_order: a `JacobianCheckReport` of the Hessian (order=2), else None.
    """

    mode: str
    dtype: str
    epsilon: float
    cost: float
    relative_difference: float
    verdict: str
    verdict_difference: float
    verdict_from: str
    correct_threshold: float
    wrong_threshold: float
    threshold_note: str
    variables: tuple
    worst: tuple
    kinks: tuple
    evaluations: int
    device: str
    ran_on: str
    modes: tuple = ("rev",)
    forward_relative_difference: float = None
    forward_reverse_difference: float = None
    forward_note: str = ""
    second_order: object = None

    @property
    def correct(self):
        return self.verdict == "correct"

    def __str__(self):
        forward = self.forward_relative_difference is not None
        lines = [
            f"Gradient check ({self.mode}, {self.dtype}, epsilon={self.epsilon:.3g}, "
            f"{self.evaluations} evaluations of J{', reverse and forward mode' if forward else ''}"
            f"{', on ' + self.device if self.device else ''})",
            f"J = {self.cost:.10g}, computed on {self.ran_on}",
            f"relative difference = {self.relative_difference:.3e} overall, "
            f"{self._worst_variable()}  ->  {self.verdict.upper()}"
            f"  (the worst figure, {self.verdict_difference:.3e}, from {self.verdict_from};"
            f" correct <= {self.correct_threshold:.1e}, wrong > {self.wrong_threshold:.1e})",
        ]
        if forward:
            lines.append(
                f"forward mode (JVP): relative difference {self.forward_relative_difference:.3e}"
                f" to numerical, {self.forward_reverse_difference:.3e} to reverse mode, overall"
            )
        for note in (self.forward_note, self.threshold_note):
            if note:
                lines.append(f"note: {note}")
        name_width = max([len("variable")] + [len(v.name) for v in self.variables])
        lines += ["", "per variable (worst first):"]
        lines.append(
            f"  {'variable':<{name_width}}  {'shape':<14} {'checked':>8} {'kinks':>6}"
            f" {'|autodiff|':>11} {'|numerical|':>11} {'rel. diff':>10}"
            + (f" {'|jvp|':>11} {'fwd-num':>10} {'fwd-rev':>10}" if forward else "")
        )
        for v in self.variables:
            lines.append(
                f"  {v.name:<{name_width}}  {str(v.shape):<14} {v.checked:>8} {v.kinks:>6}"
                f" {v.autodiff_norm:>11.4e} {v.numerical_norm:>11.4e}"
                f" {v.relative_difference:>10.3e}"
                + (
                    f" {v.jvp_norm:>11.4e} {v.forward_relative_difference:>10.3e}"
                    f" {v.forward_reverse_difference:>10.3e}"
                    if forward else ""
                )
            )
        lines += _component_table(f"{len(self.worst)} worst components:", self.worst, forward)
        if self.kinks:
            lines += _component_table(
                f"{len(self.kinks)} non-differentiable points (one-sided differences disagree;"
                " not counted):",
                self.kinks,
                forward,
            )
        if self.second_order is not None:
            lines += ["", str(self.second_order)]
        return "\n".join(lines)

    def _worst_variable(self):
        if not self.variables:
            return "no variable"
        worst = self.variables[0]  # sorted worst first
        return f"{worst.relative_difference:.3e} worst variable ({worst.name})"


def _component_table(title, components, forward):
    if not components:
        return []
    lines = ["", title]
    lines.append(
        f"  {'variable':<28} {'index':<14} {'autodiff':>13}"
        + (f" {'jvp':>13}" if forward else "")
        + f" {'numerical':>13} {'|error|':>10} {'forward':>13} {'backward':>13}"
    )
    for c in components:
        lines.append(
            f"  {c.variable:<28} {str(c.index):<14} {c.autodiff:>13.6e}"
            + (f" {c.jvp:>13.6e}" if forward else "")
            + f" {c.numerical:>13.6e} {c.error:>10.3e} {c.forward:>13.6e} {c.backward:>13.6e}"
        )
    return lines
