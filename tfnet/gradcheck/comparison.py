"""From three derivatives of each Jacobian entry to the report's figures, worst entries and verdict.

The pairs of derivatives (`jacobian_report.PAIRS`) are compared overall and per block as the
`tfnet.gradcheck.jacobian_report` docstring says; kinks (`numerics.kinks`, recognised from the
one-sided differences and the reverse-mode value, else the forward-mode one) are left out of
every figure and listed on their own.
"""

import numpy as np

from tfnet.gradcheck import jacobian_report as report_lib
from tfnet.gradcheck import numerics
from tfnet.gradcheck.report import relative_difference


def compare(derivatives, forward_difference, backward_difference, unit, block_of, name_of,
            entry, k_worst, dtype):
    """The `JacobianCheckReport` fields computed from the derivatives.

    Args:
        derivatives: {"numerical": ..., "reverse": ..., "forward": ...} (the modes checked),
            each a flat array over the entries.
        forward_difference, backward_difference, unit: the one-sided differences and round-off
            unit of each entry (`numerics.differences`).
        block_of: each entry's block number; `name_of(block)` gives its (output, input) names.
        entry: `entry(e, derivative_values)` builds the `JacobianEntry` of entry e.
        k_worst: how many worst entries to list.
        dtype: the dtype the check ran in (its thresholds).
    """
    autodiff = derivatives.get("reverse", derivatives.get("forward"))
    is_kink = numerics.kinks(autodiff, forward_difference, backward_difference, unit)
    smooth = ~is_kink
    round_off = numerics.round_off(unit)
    correct_threshold = numerics.thresholds(dtype)[0]
    pairs = [p for p in report_lib.PAIRS if p[0] in derivatives and p[1] in derivatives]

    def figure(pair, where, floor=0.0):
        return relative_difference(
            derivatives[pair[0]][where], derivatives[pair[1]][where], floor=floor
        )

    overall = tuple((report_lib.pair_name(pair), figure(pair, smooth)) for pair in pairs)
    candidates = [(d, f"{name}, overall") for name, d in overall]
    blocks = []
    for block in np.unique(block_of):
        mine = (block_of == block) & smooth
        floor = float(np.linalg.norm(round_off[mine])) / correct_threshold
        output, input_ = name_of(block)
        figures = tuple((report_lib.pair_name(pair), figure(pair, mine, floor)) for pair in pairs)
        candidates += [(d, f"{name}, d {output} / d {input_}") for name, d in figures]
        blocks.append(
            report_lib.BlockDifference(
                output=output, input=input_, checked=int(mine.sum()),
                kinks=int(((block_of == block) & is_kink).sum()), differences=figures,
            )
        )
    blocks.sort(key=lambda b: -b.worst)
    disagreeing = tuple(
        name for name, _ in overall
        if max(d for d, where in candidates if where.startswith(name + ",")) > correct_threshold
    )
    errors = np.zeros_like(autodiff)
    for first, second in pairs:
        errors = np.maximum(errors, np.abs(derivatives[first] - derivatives[second]))

    def listed(e):
        return entry(e, dict(
            reverse=_value(derivatives, "reverse", e), forward=_value(derivatives, "forward", e),
            numerical=float(derivatives["numerical"][e]),
            forward_difference=float(forward_difference[e]),
            backward_difference=float(backward_difference[e]),
        ))

    order = np.argsort(-np.where(smooth, errors, -1.0), kind="stable")[:k_worst]
    return dict(
        differences=overall,
        blocks=tuple(blocks),
        worst=tuple(listed(e) for e in order if smooth[e]),
        kinks=tuple(listed(e) for e in np.flatnonzero(is_kink)),
        disagreeing=disagreeing,
        **numerics.verdict_fields(candidates, dtype),
    )


def _value(derivatives, name, e):
    return float(derivatives[name][e]) if name in derivatives else None
