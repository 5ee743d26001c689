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

import types

import numpy as np
import tensorflow as tf

from tfnet.gradcheck import arguments, comparison, compiled, numerics, perturb
from tfnet.gradcheck import jacobian_report as report_lib

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
    evaluator = perturb.Evaluator(fn, shapes, dtype)
    at = types.SimpleNamespace(
        evaluator=evaluator, shapes=shapes, outputs=outputs, np_dtype=np_dtype, epsilon=epsilon,
        out_offsets=np.cumsum([0] + [int(np.prod(s)) for _, s in outputs]),
    )
    m, n = int(at.out_offsets[-1]), int(evaluator.offsets[-1])
    check_full_size(mode, m, n)
    at.batch_size = batch_size or numerics.default_batch_size(n + m, dtype)
    notes = []

    @compiled.traced_per_check
    def values_twice(theta):
        return fn(evaluator.unflatten(theta)), fn(evaluator.unflatten(theta))

    @compiled.traced_per_check
    def vjps(theta, cotangents):
        # Rows cotangents @ J: the Jacobian of cotangents @ y, one VJP per row (pfor).
        with tf.GradientTape() as tape:
            tape.watch(theta)
            projected = tf.linalg.matvec(cotangents, fn(evaluator.unflatten(theta)))
        return tape.jacobian(projected, theta, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    with arguments.placement(device):
        at.theta0 = np.concatenate([np.asarray(v, dtype=np_dtype).ravel() for v in values])
        at.theta = tf.constant(at.theta0)
        y0, y_again = values_twice(at.theta)
        at.ran_on = {y0.device, y_again.device}
        at.y0, y_again = y0.numpy().astype(np.float64), y_again.numpy().astype(np.float64)
        if not np.array_equal(at.y0, y_again):
            raise numerics.NondeterministicCostError(describe_randomness(at.y0, y_again))
        # Round-off scale of each output: max(1, max|y_q|) of its tensor.
        at.scale = np.concatenate([
            np.full(stop - start, max(1.0, float(np.max(np.abs(at.y0[start:stop]), initial=0.0))))
            for start, stop in zip(at.out_offsets[:-1], at.out_offsets[1:])
        ])
        probes = _full(at) if mode == "full" else _directional(at, num_directions, seed)

        derivatives = {"numerical": probes.numerical.ravel()}
        if "rev" in modes:
            try:
                rows = vjps(at.theta, tf.constant(probes.cotangents))
                at.ran_on.add(rows.device)
                rows = rows.numpy().astype(np.float64)
                derivatives["reverse"] = probes.project_vjps(rows).ravel()
            except perturb.AUTODIFF_ERRORS as error:
                notes.append(f"reverse mode not checked: {perturb.describe_error(error)}")
        if "fwd" in modes:
            try:
                derivatives["forward"] = np.asarray(probes.jvps()).ravel()
            except perturb.AUTODIFF_ERRORS as error:
                notes.append(f"forward mode not checked: {perturb.describe_error(error)}")
            if evaluator.unconnected:
                notes.append(
                    "TensorFlow found no forward-mode path from "
                    f"{evaluator.describe_unconnected(input_names)} to the outputs: "
                    "the JVPs were taken as 0"
                )
        if len(derivatives) == 1:
            raise ValueError(f"neither autodiff mode could be computed: {'; '.join(notes)}")

    def name_of(block):
        q, p = divmod(block, len(values))
        return outputs[q][0], input_names[p]

    def entry(e, derivative_values):
        q, output_index, p, input_index = probes.labels(e)
        return report_lib.JacobianEntry(
            output=outputs[q][0], output_index=output_index, input=input_names[p],
            input_index=input_index, **derivative_values,
        )

    return report_lib.JacobianCheckReport(
        checked=checked,
        mode=mode,
        modes=tuple(
            short for short, name in (("rev", "reverse"), ("fwd", "forward")) if name in derivatives
        ),
        dtype=dtype.name,
        epsilon=epsilon,
        inputs=tuple(zip(input_names, shapes)),
        outputs=tuple(outputs),
        notes=tuple(notes),
        evaluations=2 + 2 * probes.count,
        vjps=len(probes.cotangents) if "reverse" in derivatives else 0,
        jvps=probes.count if "forward" in derivatives else 0,
        device=device or "",
        ran_on=", ".join(sorted(at.ran_on)),
        **comparison.compare(
            derivatives, probes.forward_difference.ravel(), probes.backward_difference.ravel(),
            probes.unit.ravel(), probes.block_of, name_of, entry, k_worst, dtype,
        ),
    )


def _full(at):
    """Every entry: the (N, M) arrays of the columns, flattened entry e = j M + m."""
    evaluator, m = at.evaluator, int(at.out_offsets[-1])
    in_offsets, out_offsets = evaluator.offsets, at.out_offsets
    n = int(in_offsets[-1])
    h_plus, h_minus = numerics.steps(at.theta0, at.epsilon, at.np_dtype)
    index = np.arange(n)
    moved = evaluator.components(
        "value", at.theta, np.concatenate([index, index]), np.concatenate([h_plus, -h_minus]),
        at.batch_size, at.ran_on,
    )
    numerical, forward_difference, backward_difference, unit = numerics.differences(
        at.y0, moved[:n], moved[n:], h_plus, h_minus, at.scale[None, :], at.np_dtype
    )
    input_of = np.searchsorted(in_offsets, index, side="right") - 1
    output_of = np.searchsorted(out_offsets, np.arange(m), side="right") - 1

    def labels(e):
        j, k = divmod(int(e), m)
        p, q = input_of[j], output_of[k]
        return (q, _index(k - out_offsets[q], at.outputs[q][1]), p,
                _index(j - in_offsets[p], at.shapes[p]))

    return types.SimpleNamespace(
        count=n, numerical=numerical, forward_difference=forward_difference,
        backward_difference=backward_difference, unit=unit,
        cotangents=np.eye(m, dtype=at.np_dtype),
        project_vjps=lambda rows: rows.T,  # (N, M), as the other three
        jvps=lambda: evaluator.components(
            "jvp", at.theta, index, np.ones(n), at.batch_size, at.ran_on
        ),
        block_of=(output_of[None, :] * len(at.shapes) + input_of[:, None]).ravel(),
        labels=labels,
    )


def _directional(at, num_directions, seed):
    """Per block (y_q, x_p), `num_directions` random unit u on y_q and v on x_p: uᵀJv."""
    evaluator, m, rng = at.evaluator, int(at.out_offsets[-1]), np.random.default_rng(seed)
    blocks = [(q, p) for q in range(len(at.outputs)) for p in range(len(at.shapes))]
    directions, us, h, block_of = [], [], [], []
    for b, (q, p) in enumerate(blocks):
        start, stop = int(evaluator.offsets[p]), int(evaluator.offsets[p + 1])
        first, last = int(at.out_offsets[q]), int(at.out_offsets[q + 1])
        step = at.epsilon * max(1.0, float(np.max(np.abs(at.theta0[start:stop]))))
        for _ in range(num_directions):
            directions.append((start, _unit(rng, stop - start)))
            us.append(np.zeros(m))
            us[-1][first:last] = _unit(rng, last - first)
            h.append(step)
            block_of.append(b)
    us, h, block_of = np.array(us), np.array(h), np.array(block_of)
    d = len(directions)
    moved = evaluator.directions(
        "value", at.theta, directions * 2, np.concatenate([h, -h]), at.batch_size, at.ran_on
    )
    projected = np.sum(moved.reshape(2, d, m) * us, axis=2)
    numerical, forward_difference, backward_difference, unit = numerics.differences(
        (us @ at.y0)[:, None], projected[0][:, None], projected[1][:, None], h, h,
        (us * at.scale).max(axis=1, where=us != 0, initial=1.0)[:, None], at.np_dtype,
    )

    def labels(e):
        q, p = blocks[block_of[e]]
        number = int(e) - int(np.flatnonzero(block_of == block_of[e])[0])
        return q, f"u{number}", p, f"v{number}"

    return types.SimpleNamespace(
        count=d, numerical=numerical, forward_difference=forward_difference,
        backward_difference=backward_difference, unit=unit, cotangents=us.astype(at.np_dtype),
        project_vjps=lambda rows: np.array(
            [[row[start : start + v.size] @ v] for row, (start, v) in zip(rows, directions)]
        ),
        jvps=lambda: np.sum(
            evaluator.directions("jvp", at.theta, directions, h, at.batch_size, at.ran_on) * us,
            axis=1,
        )[:, None],
        block_of=block_of,
        labels=labels,
    )


def _unit(rng, size):
    u = rng.standard_normal(size)
    return u / np.linalg.norm(u)


def _index(flat, shape):
    return tuple(int(i) for i in np.unravel_index(flat, shape))
