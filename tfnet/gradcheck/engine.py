"""The one engine: any function's Jacobian from reverse mode, forward mode and differences.

For `fn` mapping input tensors x_1..x_P, flattened in order into θ (N components), to output
tensors y_1..y_Q, flattened into y (M), each checked entry of ∂y/∂θ gets three values, compared in
one way (`tfnet.gradcheck.report.compare`) whatever the mode and order: a gradient is the case
M = 1 (y = J; its blocks are the variables), a Hessian the Jacobian of a gradient (`checks`).

    reverse:   rows uᵀ(∂y/∂θ) from one tf.GradientTape pass: the gradient when M = 1, else
               `tape.jacobian` of the projections uᵀy (one VJP per row, vectorised by pfor)
    forward:   columns (∂y/∂θ)v, `tf.autodiff.ForwardAccumulator` JVPs (`evaluator`): derived by
               TensorFlow from the forward ops, never from a registered or custom gradient, so a
               wrong VJP shows up as forward and reverse mode disagreeing
    numerical: (y(θ + h⁺ e_j) − y(θ − h⁻ e_j)) / (h⁺ + h⁻),  h_j = epsilon max(1, |θ_j|)

h⁺ = (θ_j + h_j) − θ_j and h⁻ = θ_j − (θ_j − h_j) are the steps the dtype represents. The
one-sided differences (y(θ + h⁺ e_j) − y(θ)) / h⁺ and (y(θ) − y(θ − h⁻ e_j)) / h⁻ recognise kinks;
unit = eps max(1, max|y_q|) / min(h⁺, h⁻) is the round-off of y_q, the entry's output tensor,
seen through the step.

Modes: "full" checks every entry (2N evaluations of y, M VJPs, N JVPs); "sampled" (gradients)
per variable the `samples_per_variable` components with the largest |dθ| and as many random
others; "directional" per block (y_q, x_p) `num_directions` random unit u on y_q (u = 1 when y_q
has one entry) and v on x_p: reverse uᵀJ·v (one VJP per distinct u), forward uᵀ(Jv), numerical
uᵀ(y(θ + hv) − y(θ − hv)) / 2h with h = epsilon max(1, max|x_p|), a cost independent of N and M.

y is evaluated twice at θ, the second time with the state (dropout seeds, moving averages) the
first left; if the two differ, the check refuses (`NondeterministicCostError`).

Unlike `tf.test.compute_gradient`, which returns two Jacobians from fixed-delta perturbations made
one Python call at a time, the step is relative, the comparison and verdict are made, and the
perturbed evaluations run vectorised in compiled tf.functions.

References: docs/methods.md §4; jax.test_util.check_grads (one comparison for every mode and
order); torch.autograd.gradcheck (check_forward_ad, fast_mode); tf.test.compute_gradient.
"""

import numpy as np
import tensorflow as tf

from tfnet.gradcheck import report as report_lib
from tfnet.gradcheck.evaluator import AUTODIFF_ERRORS, Evaluator, describe_error, traced_per_check
from tfnet.gradcheck.options import placement

# Full mode holds a few M × N matrices of float64.
MAX_FULL_ENTRIES = 1 << 22
# Bytes of perturbed parameter vectors held at once when the batch size is chosen automatically.
_BATCH_BYTES = 1 << 25
_MAX_BATCH = 512


class NondeterministicCostError(ValueError):
    """y differed between two evaluations at the same θ (dropout active, random augmentation)."""


def default_batch_size(n, dtype):
    """As many perturbations as fit in 32 MiB of parameter vectors of n components, at most 512."""
    return int(np.clip(_BATCH_BYTES // (max(n, 1) * tf.as_dtype(dtype).size), 1, _MAX_BATCH))


def steps(theta_probed, epsilon, np_dtype):
    """(h⁺, h⁻) in float64: the representable steps θ_i ± epsilon * max(1, |θ_i|) − θ_i."""
    h = epsilon * np.maximum(1.0, np.abs(theta_probed))
    h_plus = ((theta_probed + h).astype(np_dtype) - theta_probed).astype(np.float64)
    h_minus = (theta_probed - (theta_probed - h).astype(np_dtype)).astype(np.float64)
    return h_plus, h_minus


def differences(f0, f_plus, f_minus, h_plus, h_minus, scale, np_dtype):
    """{numerical, forward_difference, backward_difference, unit} as in the module docstring,
    each flattened from (P, M).

    f_plus, f_minus: (P, M) values at θ ± h e_i; f0: at θ, broadcastable to (P, M); h_plus,
    h_minus: (P,) steps; scale: max(1, |y_q|), broadcastable to (P, M); np_dtype: the dtype y
    was computed in, whose eps sets the unit.
    """
    h_plus, h_minus = h_plus[:, None], h_minus[:, None]
    numerical = (f_plus - f_minus) / (h_plus + h_minus)
    forward = (f_plus - f0) / h_plus
    backward = (f0 - f_minus) / h_minus
    unit = np.finfo(np_dtype).eps * np.asarray(scale) / np.minimum(h_plus, h_minus)
    names = ("numerical", "forward_difference", "backward_difference", "unit")
    arrays = np.broadcast_arrays(numerical, forward, backward, unit)
    return {name: np.ravel(a) for name, a in zip(names, arrays)}


def run(fn, values, names, outputs, state, options, *, checked, describe_randomness):
    """Checks the Jacobian of `fn` at `values` and returns a `tfnet.gradcheck.report.Report`.

    `fn(values, state) -> (y, new_state)` returns the outputs, (name, shape) each in `outputs`,
    flattened into one (M,) tensor, and must be traceable by tf.function and tf.vectorized_map;
    `state` (a list of tensors) is fed back once to test that y is deterministic, never written.
    `values` are the point θ, `names` their names; with `options.kind` "gradient" y is a scalar
    cost J, which the report gives, naming its blocks by variable. `checked` says what is
    checked; `describe_randomness(y1, y2)` gives the message when y is not deterministic.
    """
    dtype, gradient = tf.as_dtype(options.dtype), options.kind == "gradient"
    point = _Point(values, names, outputs, options)
    if options.mode == "full" and point.m * point.n > MAX_FULL_ENTRIES:
        raise ValueError(
            f"`mode` must be 'directional' for a Jacobian of more than {MAX_FULL_ENTRIES:,} "
            f"entries. Received: mode='full' ({point.m:,} outputs x {point.n:,} inputs)"
        )
    notes = []
    with placement(options.device):
        state = [tf.convert_to_tensor(s) for s in state]
        point.evaluator = Evaluator(lambda values: fn(values, state)[0], point.shapes, dtype)
        point.theta = tf.constant(point.theta0)
        directional = options.mode == "directional"
        if directional:
            point.draw_directions()
        rows = point.evaluate_at_theta(fn, state, "rev" in options.modes, notes,
                                       describe_randomness)
        probes = point.directions(rows) if directional else point.components(rows)
        derivatives = {"numerical": probes["numerical"]}
        if rows is not None:
            derivatives["reverse"] = probes["reverse"]
        if "fwd" in options.modes:
            try:
                derivatives["forward"] = probes["forward"]()
            except AUTODIFF_ERRORS as error:
                notes.append(f"forward mode not checked: {describe_error(error)}")
            if point.evaluator.unconnected:
                notes.append(
                    "TensorFlow found no forward-mode path from "
                    f"{', '.join(names[v] for v in sorted(point.evaluator.unconnected))} to "
                    f"{'J' if gradient else 'the outputs'}: its JVPs were taken as 0"
                )
        if len(derivatives) == 1:
            raise ValueError(f"neither autodiff mode could be computed: {'; '.join(notes)}")

    blocks = [
        (names[p] if gradient else f"d {output} / d {names[p]}", output, names[p], shape + shape_p)
        for output, shape in point.outputs for p, shape_p in enumerate(point.shapes)
    ]
    fields, threshold_note = report_lib.compare(
        derivatives, probes["forward_difference"], probes["backward_difference"],
        probes["unit"], probes["block_of"], blocks, probes["labels"], options.k_worst,
        point.np_dtype,
    )
    return report_lib.Report(
        checked=checked, mode=options.mode,
        modes=tuple(m for m, d in report_lib.MODE_NAMES.items() if d in derivatives),
        dtype=dtype.name, epsilon=options.epsilon, inputs=tuple(zip(names, point.shapes)),
        outputs=tuple(outputs), cost=float(point.y0[0]) if gradient else None,
        notes=tuple(notes) + ((threshold_note,) if threshold_note else ()),
        evaluations=2 + 2 * probes["count"], vjps=0 if rows is None else len(rows),
        jvps=probes["count"] if "forward" in derivatives else 0, device=options.device or "",
        ran_on=", ".join(sorted(point.ran_on)), **fields,
    )


class _Point:
    """θ and y(θ), and the probes around them: what every mode shares."""

    def __init__(self, values, names, outputs, options):
        self.names, self.options = names, options
        self.shapes = [tuple(int(d) for d in v.shape) for v in values]
        self.outputs = [(name, tuple(shape)) for name, shape in outputs]
        self.np_dtype = tf.as_dtype(options.dtype).as_numpy_dtype
        self.theta0 = np.concatenate([np.asarray(v, self.np_dtype).ravel() for v in values])
        self.in_offsets = np.cumsum([0] + [int(np.prod(s)) for s in self.shapes])
        self.out_offsets = np.cumsum([0] + [int(np.prod(s)) for _, s in self.outputs])
        self.n, self.m = int(self.in_offsets[-1]), int(self.out_offsets[-1])
        self.batch_size = options.batch_size or default_batch_size(self.n + self.m, options.dtype)
        self.rng = np.random.default_rng(options.seed)
        self.cotangents = np.eye(self.m)  # the rows uᵀ of ∂y/∂θ that reverse mode computes

    def evaluate_at_theta(self, fn, state, reverse, notes, describe_randomness):
        """Sets y0 = y(θ), its scale max(1, max|y_q|) and the devices; returns the rows
        cotangents · ∂y/∂θ (None without reverse mode). Raises NondeterministicCostError when y
        evaluated again, with the state the first evaluation left, differs."""
        unflatten = self.evaluator.unflatten

        @traced_per_check
        def at_theta(theta, cotangents, reverse):
            # One graph, as training runs: eagerly (10 ms against 80 ms for the benchmark MLP) a
            # tf.custom_gradient reading layer weights gave other gradients.
            with tf.GradientTape() as tape:
                tape.watch(theta)
                y, new_state = fn(unflatten(theta), state)
                several = cotangents.shape[0] > 1  # else one VJP (a gradient), no projection
                projected = tf.linalg.matvec(cotangents, y) if several else y
            zero = tf.UnconnectedGradients.ZERO
            rows = (None if not reverse
                    else tape.jacobian(projected, theta, unconnected_gradients=zero) if several
                    else tape.gradient(y, theta, output_gradients=tf.reshape(cotangents, [-1]),
                                       unconnected_gradients=zero))
            return y, rows, fn(unflatten(theta), new_state)[0]

        cotangents = tf.constant(self.cotangents, self.np_dtype)
        try:
            y0, rows, y_again = at_theta(self.theta, cotangents, reverse)
        except AUTODIFF_ERRORS as error:
            if not reverse:
                raise
            notes.append(f"reverse mode not checked: {describe_error(error)}")
            y0, rows, y_again = at_theta(self.theta, cotangents, False)
        # Where the compiled functions ran, from their outputs (not from the device asked for).
        self.ran_on = {t.device for t in (y0, rows, y_again) if t is not None}
        self.y0, y_again = y0.numpy().astype(np.float64), y_again.numpy().astype(np.float64)
        if not np.array_equal(self.y0, y_again):
            raise NondeterministicCostError(describe_randomness(self.y0, y_again))
        self.scale = np.concatenate([
            np.full(stop - start, max(1.0, float(np.max(np.abs(self.y0[start:stop]), initial=0))))
            for start, stop in zip(self.out_offsets[:-1], self.out_offsets[1:])
        ])
        if rows is None:
            return None
        return rows.numpy().astype(np.float64).reshape(len(self.cotangents), -1)

    def components(self, rows):
        """Entries (j, m) for the checked components j, entry e = k M + m for the k-th: every j,
        or ("sampled") per input the `samples_per_variable` with the largest max_m |∂y_m/∂θ_j|
        and as many others drawn at random."""
        options, m = self.options, self.m
        if options.mode == "full":
            index = np.arange(self.n)
        else:
            score = np.zeros(self.n) if rows is None else np.abs(rows).max(axis=0)
            chosen, k = [], options.samples_per_variable
            for start, stop in zip(self.in_offsets[:-1], self.in_offsets[1:]):
                order = np.argsort(-score[start:stop], kind="stable")
                largest, rest = order[:k], order[k:]
                drawn = self.rng.choice(rest, size=min(k, rest.size), replace=False)
                chosen.append(start + np.sort(np.concatenate([largest, drawn])))
            index = np.concatenate(chosen)
        count = len(index)
        h_plus, h_minus = steps(self.theta0[index], options.epsilon, self.np_dtype)
        moved = self.evaluator.components(
            "value", self.theta, np.concatenate([index, index]),
            np.concatenate([h_plus, -h_minus]), self.batch_size, self.ran_on,
        )
        input_of = np.searchsorted(self.in_offsets, index, side="right") - 1
        output_of = np.searchsorted(self.out_offsets, np.arange(m), side="right") - 1

        def labels(e):
            # Only the listed entries are labelled (np.unravel_index on all 6,820 components of
            # the benchmark MLP took 60 ms).
            k, i = divmod(int(e), m)
            (output, shape), p = self.outputs[output_of[i]], input_of[k]
            return (output, _index(i - self.out_offsets[output_of[i]], shape), self.names[p],
                    _index(index[k] - self.in_offsets[p], self.shapes[p]))

        return dict(
            count=count, labels=labels,
            reverse=None if rows is None else rows[:, index].T.ravel(),
            forward=lambda: self.evaluator.components(
                "jvp", self.theta, index, np.ones(count), self.batch_size, self.ran_on).ravel(),
            block_of=(output_of[None, :] * len(self.shapes) + input_of[:, None]).ravel(),
            **differences(self.y0, moved[:count], moved[count:], h_plus, h_minus,
                          self.scale[None, :], self.np_dtype),
        )

    def draw_directions(self):
        """Per block (y_q, x_p), `num_directions` random unit (u on y_q, v on x_p); the distinct
        u become the cotangents of reverse mode (one, u = 1, for a gradient)."""
        self.blocks, self.moves, us, self.h = [], [], [], []
        for q, (first, last) in enumerate(zip(self.out_offsets[:-1], self.out_offsets[1:])):
            for p, (start, stop) in enumerate(zip(self.in_offsets[:-1], self.in_offsets[1:])):
                largest = float(np.max(np.abs(self.theta0[start:stop])))
                step = self.options.epsilon * max(1.0, largest)
                for _ in range(self.options.num_directions):
                    self.moves.append((start, _unit(self.rng, stop - start)))
                    us.append(np.zeros(self.m))
                    us[-1][first:last] = _unit(self.rng, last - first) if last - first > 1 else 1.0
                    self.h.append(step)
                    self.blocks.append((q, p))
        self.us, self.h = np.array(us), np.array(self.h)
        self.cotangents, self.row_of = np.unique(self.us, axis=0, return_inverse=True)

    def directions(self, rows):
        """The probes uᵀ(∂y/∂θ)v drawn by `draw_directions`, one entry each."""
        count, moves, us, h, m = len(self.moves), self.moves, self.us, self.h, self.m
        moved = self.evaluator.directions(
            "value", self.theta, moves * 2, np.concatenate([h, -h]), self.batch_size, self.ran_on
        )
        projected = np.sum(moved.reshape(2, count, m) * us, axis=2)
        number = self.options.num_directions

        def labels(e):
            q, p = self.blocks[e]
            output, shape = self.outputs[q]
            return (output, f"u{e % number}" if np.prod(shape) > 1 else _index(0, shape),
                    self.names[p], f"v{e % number}")

        return dict(
            count=count, labels=labels,
            reverse=None if rows is None else np.array(
                [rows[r, start : start + v.size] @ v
                 for r, (start, v) in zip(self.row_of.ravel(), moves)]),
            forward=lambda: np.sum(self.evaluator.directions(
                "jvp", self.theta, moves, h, self.batch_size, self.ran_on) * us, axis=1),
            block_of=np.array([q * len(self.shapes) + p for q, p in self.blocks]),
            **differences(
                (us @ self.y0)[:, None], projected[0][:, None], projected[1][:, None], h, h,
                (us * self.scale).max(axis=1, where=us != 0, initial=1.0)[:, None], self.np_dtype),
        )


def _unit(rng, size):
    u = rng.standard_normal(size)
    return u / np.linalg.norm(u)


def _index(flat, shape):
    return tuple(int(i) for i in np.unravel_index(flat, shape))
