"""The gradient of a scalar cost J(θ) against two-sided differences, in reverse and forward mode.

All variables are flattened, in order, into one vector θ of N components (docs/methods.md §4). For each
checked component i (or random direction u) the two-sided difference dθ_approx[i] of J
(`tfnet.gradcheck.numerics`) is compared with

    reverse ("rev"):  dθ[i] = (∇J)_i from one tf.GradientTape pass    (g·u for a direction u)
    forward ("fwd"):  jvp[i] = (∂J/∂θ) e_i from tf.autodiff.ForwardAccumulator, one JVP per
                      component (vectorised), so TensorFlow derives it from the forward ops and
                      never calls a registered or custom gradient    ((∂J/∂θ) u for a direction)

The verdict is the worst of the overall relative difference and the per-variable ones, the latter
with their denominators floored at ‖r_v‖ / correct_threshold (see `tfnet.gradcheck.report`): a
variable's figure counts however small its gradients are, but not its round-off. With forward mode
the same figures of jvp against dθ_approx and of jvp against dθ join them.
"""

import numpy as np
import tensorflow as tf

from tfnet.gradcheck import arguments, compiled, numerics, perturb
from tfnet.gradcheck import probes as probes_lib
from tfnet.gradcheck import report as report_lib


def run_check(
    cost,
    values,
    names,
    state,
    *,
    mode,
    modes,
    epsilon,
    dtype,
    k_worst,
    samples_per_variable,
    num_directions,
    batch_size,
    device,
    seed,
    describe_randomness,
):
    """Checks `cost`'s gradient at `values` and returns a `GradientCheckReport`.

    `cost(values, state) -> (J, new_state)` must be traceable by `tf.function` and
    `tf.vectorized_map`; `state` (a list of tensors, e.g. BatchNorm's moving averages and the
    dropout seeds) is fed back once to test that J is deterministic, and never written anywhere.
    `describe_randomness(j1, j2)` returns the error message when it is not. `modes` is
    ("rev",) or ("rev", "fwd").
    """
    dtype = tf.as_dtype(dtype)
    np_dtype = dtype.as_numpy_dtype
    epsilon = numerics.default_epsilon(dtype) if epsilon is None else float(epsilon)
    shapes = [tuple(int(d) for d in v.shape) for v in values]
    with arguments.placement(device):
        state = [tf.convert_to_tensor(s) for s in state]
        evaluator = perturb.Evaluator(
            lambda values: tf.reshape(cost(values, state)[0], [1]), shapes, dtype
        )
        offsets = evaluator.offsets
        if batch_size is None:
            batch_size = numerics.default_batch_size(int(offsets[-1]), dtype)

        @compiled.traced_per_check
        def cost_gradient_and_repeat(theta):
            # J and its gradient at θ, then J again at θ with the state the first call left. In
            # a graph, as the perturbed J are and as training runs: eagerly (10 ms against 80 ms
            # for the benchmark MLP) a tf.custom_gradient reading layer weights gave other
            # gradients (test_planted_bug_is_wrong_and_located).
            with tf.GradientTape() as tape:
                tape.watch(theta)
                j, state1 = cost(evaluator.unflatten(theta), state)
            gradient = tape.gradient(j, theta, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return j, gradient, cost(evaluator.unflatten(theta), state1)[0]

        theta0 = np.concatenate([np.asarray(v, dtype=np_dtype).ravel() for v in values])
        theta = tf.constant(theta0)
        j0, gradient, j_again = cost_gradient_and_repeat(theta)
        # Where the compiled functions ran, from their outputs (not from the device asked for).
        ran_on = {j0.device, gradient.device, j_again.device}
        j0, j_again, gradient = float(j0), float(j_again), gradient.numpy().astype(np.float64)
        if j0 != j_again:
            raise numerics.NondeterministicCostError(describe_randomness(j0, j_again))
        rng = np.random.default_rng(seed)

        if mode == "directional":
            probes, autodiff, h_plus, h_minus, directions = probes_lib.directions(
                theta0, gradient, offsets, num_directions, epsilon, rng
            )
            moved = evaluator.directions(
                "value", theta, directions * 2, np.concatenate([h_plus, -h_minus]), batch_size,
                ran_on,
            )[:, 0]

            def jvps():
                return evaluator.directions("jvp", theta, directions, h_plus, batch_size, ran_on)
        else:
            probes = probes_lib.components(gradient, offsets, mode, samples_per_variable, rng)
            autodiff = gradient[probes]
            h_plus, h_minus = numerics.steps(theta0[probes], epsilon, np_dtype)
            moved = evaluator.components(
                "value", theta, np.concatenate([probes, probes]),
                np.concatenate([h_plus, -h_minus]), batch_size, ran_on,
            )[:, 0]

            def jvps():
                return evaluator.components(
                    "jvp", theta, probes, np.ones(len(probes)), batch_size, ran_on
                )

        forward_note, jvp = "", None
        if "fwd" in modes:
            try:
                jvp = jvps()[:, 0]
            except perturb.AUTODIFF_ERRORS as error:
                forward_note = (
                    "forward mode not checked: TensorFlow cannot compute a JVP of this cost "
                    f"({perturb.describe_error(error)})"
                )
            if evaluator.unconnected:
                forward_note = (
                    "TensorFlow found no forward-mode path from "
                    f"{evaluator.describe_unconnected(names)} to J: its JVP was taken as 0"
                )

    j_plus, j_minus = moved[: len(probes)], moved[len(probes) :]
    numerical, forward, backward, unit = (
        a[:, 0]
        for a in numerics.differences(
            np.array([j0]), j_plus[:, None], j_minus[:, None], h_plus, h_minus,
            max(1.0, abs(j0)), np_dtype,
        )
    )
    is_kink = numerics.kinks(autodiff, forward, backward, unit)

    flat_probes = probes[:, 0] if mode == "directional" else probes
    variable_of = np.searchsorted(offsets, flat_probes, side="right") - 1

    def label(k):
        # Only the listed components are labelled (np.unravel_index on all 6,820 components of
        # the benchmark MLP took 60 ms).
        if mode == "directional":
            return f"u{probes[k, 1]}"
        v = variable_of[k]
        return tuple(int(i) for i in np.unravel_index(probes[k] - offsets[v], shapes[v]))

    def component(k):
        return report_lib.Component(
            variable=names[variable_of[k]],
            index=label(k),
            autodiff=float(autodiff[k]),
            numerical=float(numerical[k]),
            forward=float(forward[k]),
            backward=float(backward[k]),
            jvp=None if jvp is None else float(jvp[k]),
        )

    smooth = ~is_kink
    round_off = numerics.round_off(unit)
    correct_threshold = numerics.thresholds(dtype)[0]
    candidates = []  # (relative difference, where) for the verdict
    per_variable = []
    for v, name in enumerate(names):
        mine = (variable_of == v) & smooth
        floor = float(np.linalg.norm(round_off[mine])) / correct_threshold
        figures = dict(
            relative_difference=report_lib.relative_difference(
                numerical[mine], autodiff[mine], floor=floor
            )
        )
        if jvp is not None:
            figures.update(
                jvp_norm=float(np.linalg.norm(jvp[mine])),
                forward_relative_difference=report_lib.relative_difference(
                    numerical[mine], jvp[mine], floor=floor
                ),
                forward_reverse_difference=report_lib.relative_difference(
                    autodiff[mine], jvp[mine], floor=floor
                ),
            )
            candidates += [
                (figures["forward_relative_difference"], f"forward vs numerical, {name}"),
                (figures["forward_reverse_difference"], f"forward vs reverse, {name}"),
            ]
        per_variable.append(
            report_lib.VariableDifference(
                name=name,
                shape=shapes[v],
                checked=int(mine.sum()),
                kinks=int(((variable_of == v) & is_kink).sum()),
                autodiff_norm=float(np.linalg.norm(autodiff[mine])),
                numerical_norm=float(np.linalg.norm(numerical[mine])),
                round_off_norm=floor * correct_threshold,
                **figures,
            )
        )
    per_variable.sort(key=lambda d: -d.relative_difference)
    candidates += [(d.relative_difference, d.name) for d in per_variable]
    worst_of = np.abs(autodiff - numerical)
    overall = report_lib.relative_difference(numerical[smooth], autodiff[smooth])
    candidates.insert(0, (overall, "overall"))
    forward_overall = forward_reverse = None
    if jvp is not None:
        worst_of = np.maximum(worst_of, np.maximum(np.abs(jvp - numerical), np.abs(jvp - autodiff)))
        forward_overall = report_lib.relative_difference(numerical[smooth], jvp[smooth])
        forward_reverse = report_lib.relative_difference(autodiff[smooth], jvp[smooth])
        candidates[1:1] = [
            (forward_overall, "forward vs numerical, overall"),
            (forward_reverse, "forward vs reverse, overall"),
        ]
    errors = np.where(smooth, worst_of, -1.0)
    worst = [k for k in np.argsort(-errors, kind="stable")[:k_worst] if smooth[k]]
    return report_lib.GradientCheckReport(
        mode=mode,
        dtype=dtype.name,
        epsilon=epsilon,
        cost=j0,
        relative_difference=overall,
        # The worst figure decides: in the overall one, a wrong gradient of a variable with
        # small gradients is diluted by the large, right gradients of the others.
        **numerics.verdict_fields(candidates, dtype),
        variables=tuple(per_variable),
        worst=tuple(component(k) for k in worst),
        kinks=tuple(component(k) for k in np.flatnonzero(is_kink)),
        evaluations=3 + 2 * len(probes),
        device=device or "",
        ran_on=", ".join(sorted(ran_on)),
        modes=modes if jvp is not None else ("rev",),
        forward_relative_difference=forward_overall,
        forward_reverse_difference=forward_reverse,
        forward_note=forward_note,
    )
