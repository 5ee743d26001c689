"""Every entry of a Jacobian from reverse mode, forward mode and two-sided differences.

For `fn` mapping input tensors x_1..x_P to output tensors y_1..y_Q, flattened in order into x
(N components) and y (M), the Jacobian J = ∂y/∂x (M × N) is computed three ways:

    reverse:   the rows uᵀJ for u = e_1..e_M: `tape.jacobian(y, x)`, one VJP per row (pfor)
    forward:   the columns J e_j for j = 1..N: one `tf.autodiff.ForwardAccumulator` JVP per
               column, vectorised (`tfnet.gradcheck.perturb`); TensorFlow derives it from the
               forward ops, so it never calls a `tf.custom_gradient`'s hand-written VJP
    numerical: the columns (y(x + h⁺ e_j) − y(x − h⁻ e_j)) / (h⁺ + h⁻), h_j = epsilon max(1, |x_j|)

and compared pairwise (`tfnet.gradcheck.jacobian_report`). In `directional` mode, for each block
(y_q, x_p), `num_directions` random unit vectors u on y_q and v on x_p give

    reverse uᵀJ·v (one VJP),  forward uᵀ(Jv) (one JVP),  numerical uᵀ(y(x + hv) − y(x − hv)) / 2h

with h = epsilon max(1, max|x_p|): the cost no longer grows with N and M.

References: torch.autograd.gradcheck (its check_forward_ad and fast_mode),
jax.test_util.check_grads (modes=("fwd", "rev")), tf.test.compute_gradient.
"""

import numpy as np
import tensorflow as tf

from tfnet.gradcheck import jacobian_report as report_lib
from tfnet.gradcheck import arguments, numerics, perturb
from tfnet.gradcheck.report import relative_difference

# What TensorFlow raises when it cannot derive a rule for an op in one mode.
AUTODIFF_ERRORS = (LookupError, NotImplementedError)
# Full mode holds a few M × N matrices of float64.
MAX_FULL_ENTRIES = 1 << 22


def check_full_size(mode, m, n):
    """ValueError when a full check would hold more than MAX_FULL_ENTRIES entries."""
    if mode == "full" and m * n > MAX_FULL_ENTRIES:
        raise ValueError(
            f"`mode` must be 'directional' for a Jacobian of more than {MAX_FULL_ENTRIES:,} "
            f"entries. Received: mode='full' ({m:,} outputs x {n:,} inputs)"
        )


def run(fn, values, input_names, outputs, *, mode, modes, epsilon, dtype, k_worst,
        num_directions, batch_size, device, seed, checked, describe_randomness):
    """Checks the Jacobian of `fn` at `values` and returns a `JacobianCheckReport`.

    `fn(values)` returns the outputs flattened into one (M,) tensor; `outputs` lists their
    (name, shape). `checked` says what is checked; `describe_randomness(y1, y2)` gives the
    error message when two evaluations at the same point differ.
    """
    dtype = tf.as_dtype(dtype)
    np_dtype = dtype.as_numpy_dtype
    epsilon = numerics.default_epsilon(dtype) if epsilon is None else float(epsilon)
    shapes = [tuple(int(d) for d in v.shape) for v in values]
    out_offsets = np.cumsum([0] + [int(np.prod(s)) for _, s in outputs])
    m = int(out_offsets[-1])
    evaluator = perturb.Evaluator(fn, shapes, dtype)
    in_offsets = evaluator.offsets
    n = int(in_offsets[-1])
    check_full_size(mode, m, n)
    batch_size = batch_size or numerics.default_batch_size(n + m, dtype)
    rng = np.random.default_rng(seed)
    notes = []

    @tf.function(autograph=False)
    def values_twice(theta):
        return fn(evaluator.unflatten(theta)), fn(evaluator.unflatten(theta))

    @tf.function(autograph=False)
    def vjps(theta, cotangents):
        # Rows cotangents @ J: the Jacobian of cotangents @ y, one VJP per row (pfor).
        with tf.GradientTape() as tape:
            tape.watch(theta)
            projected = tf.linalg.matvec(cotangents, fn(evaluator.unflatten(theta)))
        return tape.jacobian(
            projected, theta, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )

    with arguments.placement(device):
        theta0 = np.concatenate([np.asarray(v, dtype=np_dtype).ravel() for v in values])
        theta = tf.constant(theta0)
        y0, y_again = values_twice(theta)
        ran_on = {y0.device, y_again.device}
        y0, y_again = y0.numpy().astype(np.float64), y_again.numpy().astype(np.float64)
        if not np.array_equal(y0, y_again):
            raise numerics.NondeterministicCostError(describe_randomness(y0, y_again))
        # Round-off scale of each output: max(1, max|y_q|) of its tensor.
        scale = np.concatenate([
            np.full(stop - start, max(1.0, float(np.max(np.abs(y0[start:stop]), initial=0.0))))
            for start, stop in zip(out_offsets[:-1], out_offsets[1:])
        ])

        if mode == "full":
            cotangents = np.eye(m, dtype=np_dtype)
            h_plus, h_minus = numerics.steps(theta0, epsilon, np_dtype)
            index = np.arange(n)
            moved = evaluator.components(
                "value", theta, np.concatenate([index, index]),
                np.concatenate([h_plus, -h_minus]), batch_size, ran_on,
            )
            numerical, forward_difference, backward_difference, unit = numerics.differences(
                y0, moved[:n], moved[n:], h_plus, h_minus, scale[None, :], np_dtype
            )

            def jvps():
                return evaluator.components("jvp", theta, index, np.ones(n), batch_size, ran_on)

            def project_vjps(rows):
                return rows.T  # (N, M), as the other three

            # Entry (j, m) of the (N, M) arrays, flattened: its block and labels.
            input_of = np.searchsorted(in_offsets, np.arange(n), side="right") - 1
            output_of = np.searchsorted(out_offsets, np.arange(m), side="right") - 1
            block_of = (output_of[None, :] * len(values) + input_of[:, None]).ravel()

            def labels(e):
                j, k = divmod(int(e), m)
                p, q = input_of[j], output_of[k]
                return (q, _index(k - out_offsets[q], outputs[q][1]), p,
                        _index(j - in_offsets[p], shapes[p]))
        else:
            blocks = [(q, p) for q in range(len(outputs)) for p in range(len(values))]
            directions, us, h, block_of = [], [], [], []
            for b, (q, p) in enumerate(blocks):
                start, stop = int(in_offsets[p]), int(in_offsets[p + 1])
                step = epsilon * max(1.0, float(np.max(np.abs(theta0[start:stop]))))
                for _ in range(num_directions):
                    directions.append((start, _unit(rng, stop - start)))
                    u = np.zeros(m)
                    u[out_offsets[q] : out_offsets[q + 1]] = _unit(rng, int(out_offsets[q + 1] - out_offsets[q]))
                    us.append(u)
                    h.append(step)
                    block_of.append(b)
            us, h, block_of = np.array(us), np.array(h), np.array(block_of)
            cotangents = us.astype(np_dtype)
            moved = evaluator.directions(
                "value", theta, directions * 2, np.concatenate([h, -h]), batch_size, ran_on
            )
            d = len(directions)
            projected = np.sum(moved.reshape(2, d, m) * us, axis=2)
            numerical, forward_difference, backward_difference, unit = numerics.differences(
                (us @ y0)[:, None], projected[0][:, None], projected[1][:, None], h, h,
                (us * scale).max(axis=1, where=us != 0, initial=1.0)[:, None], np_dtype,
            )

            def jvps():
                along = evaluator.directions("jvp", theta, directions, h, batch_size, ran_on)
                return np.sum(along * us, axis=1)[:, None]

            def project_vjps(rows):
                return np.array(
                    [[row[start : start + v.size] @ v] for row, (start, v) in zip(rows, directions)]
                )

            def labels(e):
                q, p = blocks[block_of[e]]
                number = int(e) - int(np.flatnonzero(block_of == block_of[e])[0])
                return q, f"u{number}", p, f"v{number}"

        derivatives = {"numerical": numerical.ravel()}
        if "rev" in modes:
            try:
                rows = vjps(theta, tf.constant(cotangents))
                ran_on.add(rows.device)
                derivatives["reverse"] = project_vjps(rows.numpy().astype(np.float64)).ravel()
            except AUTODIFF_ERRORS as error:
                notes.append(f"reverse mode not checked: {_first_line(error)}")
        if "fwd" in modes:
            try:
                derivatives["forward"] = np.asarray(jvps()).ravel()
            except AUTODIFF_ERRORS as error:
                notes.append(f"forward mode not checked: {_first_line(error)}")
            if evaluator.unconnected:
                notes.append(
                    "TensorFlow found no forward-mode path from "
                    f"{evaluator.describe_unconnected(input_names)} to the outputs: "
                    "the JVPs were taken as 0"
                )
        if len(derivatives) == 1:
            raise ValueError(f"neither autodiff mode could be computed: {'; '.join(notes)}")

    forward_difference, backward_difference = forward_difference.ravel(), backward_difference.ravel()
    unit = unit.ravel()
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

    def name_of(block):
        q, p = divmod(block, len(values))
        return outputs[q][0], input_names[p]

    overall = tuple((report_lib.pair_name(pair), figure(pair, smooth)) for pair in pairs)
    candidates = [(d, f"{name}, overall") for name, d in overall]
    block_reports = []
    for block in np.unique(block_of):
        mine = (block_of == block) & smooth
        floor = float(np.linalg.norm(round_off[mine])) / correct_threshold
        output, input_ = name_of(block)
        figures = tuple((report_lib.pair_name(pair), figure(pair, mine, floor)) for pair in pairs)
        candidates += [(d, f"{name}, d {output} / d {input_}") for name, d in figures]
        block_reports.append(
            report_lib.BlockDifference(
                output=output, input=input_, checked=int(mine.sum()),
                kinks=int(((block_of == block) & is_kink).sum()), differences=figures,
            )
        )
    block_reports.sort(key=lambda b: -b.worst)
    disagreeing = tuple(
        name for name, _ in overall
        if max(d for d, where in candidates if where.startswith(name + ",")) > correct_threshold
    )

    errors = np.zeros_like(autodiff)
    for pair in pairs:
        errors = np.maximum(errors, np.abs(derivatives[pair[0]] - derivatives[pair[1]]))

    def entry(e):
        q, output_index, p, input_index = labels(e)
        return report_lib.JacobianEntry(
            output=outputs[q][0], output_index=output_index,
            input=input_names[p], input_index=input_index,
            reverse=_value(derivatives, "reverse", e), forward=_value(derivatives, "forward", e),
            numerical=float(derivatives["numerical"][e]),
            forward_difference=float(forward_difference[e]),
            backward_difference=float(backward_difference[e]),
        )

    order = np.argsort(-np.where(smooth, errors, -1.0), kind="stable")[:k_worst]
    probes = n if mode == "full" else len(h)
    return report_lib.JacobianCheckReport(
        checked=checked,
        mode=mode,
        modes=tuple(mode_ for mode_, name in (("rev", "reverse"), ("fwd", "forward"))
                    if name in derivatives),
        dtype=dtype.name,
        epsilon=epsilon,
        inputs=tuple(zip(input_names, shapes)),
        outputs=tuple(outputs),
        differences=overall,
        blocks=tuple(block_reports),
        worst=tuple(entry(e) for e in order if smooth[e]),
        kinks=tuple(entry(e) for e in np.flatnonzero(is_kink)),
        disagreeing=disagreeing,
        notes=tuple(notes),
        evaluations=2 + 2 * probes,
        vjps=len(cotangents) if "reverse" in derivatives else 0,
        jvps=probes if "forward" in derivatives else 0,
        device=device or "",
        ran_on=", ".join(sorted(ran_on)),
        **numerics.verdict_fields(candidates, dtype),
    )


def _unit(rng, size):
    u = rng.standard_normal(size)
    return u / np.linalg.norm(u)


def _index(flat, shape):
    return tuple(int(i) for i in np.unravel_index(flat, shape))


def _value(derivatives, name, e):
    return float(derivatives[name][e]) if name in derivatives else None


def _first_line(error):
    return f"{type(error).__name__}: {str(error).strip().splitlines()[0]}"
