"""Two-sided differences of a cost J(θ) against its tf.GradientTape gradient, vectorised.

All variables are flattened, in order, into one vector θ of N components (METHODS.md §4). For a
checked component i with step h_i = epsilon * max(1, |θ_i|):

    dθ_approx[i] = (J(θ + h⁺ e_i) − J(θ − h⁻ e_i)) / (h⁺ + h⁻)
    forward[i]   = (J(θ + h⁺ e_i) − J(θ)) / h⁺,    backward[i] = (J(θ) − J(θ − h⁻ e_i)) / h⁻

where h⁺ = (θ_i + h_i) − θ_i and h⁻ = θ_i − (θ_i − h_i) are the steps actually representable in
the dtype (both equal h_i up to round-off). In `directional` mode e_i is replaced by a random unit
vector u supported on one variable (h = epsilon * max(1, max|θ_variable|)) and dθ[i] by g·u.

A component is a kink (a non-differentiable point within the step, e.g. a ReLU input within h of
0) when its one-sided differences disagree and the autodiff value sides with one of them:

    |forward − backward| > 1e-3 max(|forward|, |backward|) + 64 eps max(1, |J|) / min(h⁺, h⁻)
    and min(|dθ − forward|, |dθ − backward|) < |forward − backward| / 4

For smooth J, forward − backward ≈ h J'' and dθ lies half-way between them, so neither condition
is met by a wrong gradient unless |J''| h ≳ 0.4 |dθ|.

The verdict is the worst of the overall relative difference and the per-variable ones, the latter
with their denominators floored at ‖r_v‖ / correct_threshold, r_i = 16 eps max(1, |J|) / h_i
(see `tfnet.gradcheck.report`): a variable's figure counts however small its gradients are, but
not its round-off.

The perturbed evaluations run in batches of about K inside one compiled `tf.function`, so a full
check makes ⌈2N / K⌉ calls. Components: the variables are split into groups of consecutive ones,
a new group starting at every variable that holds at least 10% of θ (a kernel, with the small
bias and layers after it), and each call runs one `tf.vectorized_map` per group over that group's
share of the K perturbations (share ∝ its count of perturbations). Inside a group's map the other
variables are loop-invariant, so pfor computes the layers before the group once and the layers
after it as one large matmul over the K inputs, instead of K small ones with K copies of every
weight (a whole full check of a 6,820-parameter MLP, 13,643 evaluations, median of 8 runs
interleaved with the former single map over all of θ: 0.89 s against 1.10 s, 2-core CPU).
Directions: a `tf.map_fn` loop (large θ, where each forward pass is already big).
"""

import contextlib

import numpy as np
import tensorflow as tf

from tfnet.gradcheck import probes as probes_lib
from tfnet.gradcheck import report as report_lib

MODES = ("full", "sampled", "directional")
# Thresholds on the relative difference in float64 (METHODS.md §4).
CORRECT_THRESHOLD = 1e-7
WRONG_THRESHOLD = 1e-3
# Bound on one central difference's round-off, in units of eps max(1, |J|) / h (errors of correct
# gradients measured on the test models: 0.1 to 1 unit, up to 10 where the h² term adds in).
_ROUND_OFF_UNITS = 16
# Bytes of perturbed parameter vectors held at once when the batch size is chosen automatically.
_BATCH_BYTES = 1 << 25
_MAX_BATCH = 512
# A variable holding at least this fraction of θ starts a new group of perturbed variables.
_GROUP_FRACTION = 0.1


class NondeterministicCostError(ValueError):
    """J differed between two evaluations at the same θ (dropout active, random augmentation)."""


def default_epsilon(dtype):
    """The central-difference step balancing truncation and round-off: eps^(1/3) of the dtype."""
    return float(np.finfo(tf.as_dtype(dtype).as_numpy_dtype).eps ** (1.0 / 3.0))


def thresholds(dtype):
    """(correct_threshold, wrong_threshold, note) for a check run in `dtype`.

    float64: 1e-7 and 1e-3 (METHODS.md §4). Otherwise the round-off of J grows by
    eps_dtype / eps_float64, so the correct threshold is multiplied by sqrt of that ratio (2.3e4
    for float32, giving 2.3e-3) and the wrong threshold is max(1e-3, 10 × correct threshold).
    """
    eps = np.finfo(tf.as_dtype(dtype).as_numpy_dtype).eps
    eps64 = np.finfo(np.float64).eps
    if eps <= eps64:
        return CORRECT_THRESHOLD, WRONG_THRESHOLD, ""
    correct = CORRECT_THRESHOLD * float(np.sqrt(eps / eps64))
    wrong = max(WRONG_THRESHOLD, 10.0 * correct)
    note = (
        f"ran in {tf.as_dtype(dtype).name}, not float64: thresholds rescaled from 1e-7 / 1e-3 to "
        f"{correct:.1e} / {wrong:.1e} (x sqrt(eps_{tf.as_dtype(dtype).name} / eps_float64))"
    )
    return correct, wrong, note


def check_arguments(mode, epsilon, k_worst, samples_per_variable, num_directions, batch_size):
    """Raises ValueError naming the argument, the rule and the value received."""
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
    if epsilon is not None and not (np.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"`epsilon` must be a finite number > 0. Received: epsilon={epsilon}")
    for name, value, low in (
        ("k_worst", k_worst, 0),
        ("samples_per_variable", samples_per_variable, 1),
        ("num_directions", num_directions, 1),
    ):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"`{name}` must be an integer >= {low}. Received: {name}={value!r}")
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(
            f"`batch_size` must be None or an integer >= 1. Received: batch_size={batch_size!r}"
        )


def run_check(
    cost,
    values,
    names,
    state,
    *,
    mode,
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
    `describe_randomness(j1, j2)` returns the error message when it is not.
    """
    dtype = tf.as_dtype(dtype)
    np_dtype = dtype.as_numpy_dtype
    epsilon = default_epsilon(dtype) if epsilon is None else float(epsilon)
    shapes = [tuple(int(d) for d in v.shape) for v in values]
    offsets = np.cumsum([0] + [int(np.prod(s)) for s in shapes])
    n = int(offsets[-1])
    if batch_size is None:
        batch_size = int(np.clip(_BATCH_BYTES // (n * np_dtype().itemsize), 1, _MAX_BATCH))
    placement = tf.device(device) if device else contextlib.nullcontext()

    def unflatten(theta):
        return [
            tf.reshape(theta[offsets[v] : offsets[v + 1]], shape) for v, shape in enumerate(shapes)
        ]

    def cost_at(theta):
        return cost(unflatten(theta), state)[0]

    @tf.function(autograph=False)
    def cost_gradient_and_repeat(theta):
        # J and its gradient at θ, then J again at θ with the state the first call left behind.
        with tf.GradientTape() as tape:
            tape.watch(theta)
            j, state1 = cost(unflatten(theta), state)
        gradient = tape.gradient(j, theta, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return j, gradient, cost(unflatten(theta), state1)[0]

    groups = _variable_groups(offsets)

    @tf.function(autograph=False)
    def cost_components(theta, indices, steps):
        # Per group g: K_g one-component perturbations (indices within the group's slice of θ)
        # -> (K_g,) costs, as one vectorised graph in which only the group's variables are
        # batched over K_g (pfor turns the layers' ops into batched ops).
        values = unflatten(theta)
        costs = []
        for (first, last), index, step in zip(groups, indices, steps):
            start, stop = int(offsets[first]), int(offsets[last])

            def perturbed_cost(one, first=first, last=last, start=start, stop=stop):
                index, step = one
                group = theta[start:stop] + tf.one_hot(index, stop - start, dtype=dtype) * step
                perturbed = list(values)
                for v in range(first, last):
                    begin, end = int(offsets[v]) - start, int(offsets[v + 1]) - start
                    perturbed[v] = tf.reshape(group[begin:end], shapes[v])
                return cost(perturbed, state)[0]

            costs.append(tf.vectorized_map(perturbed_cost, (index, step)))
        return costs

    @tf.function(autograph=False)
    def cost_directions(theta, perturbations):
        # A directional check is meant for large θ, where one evaluation is already a full-size
        # forward pass: vectorising would only add K copies of θ, so the K evaluations run one
        # after the other in a tf.while_loop (measured 2.4 s against 3.5 s at 1M parameters).
        return tf.map_fn(lambda p: cost_at(theta + p), perturbations, parallel_iterations=1)

    with placement:
        theta0 = np.concatenate([np.asarray(v, dtype=np_dtype).ravel() for v in values])
        theta = tf.constant(theta0)
        state = [tf.convert_to_tensor(s) for s in state]
        j0, gradient, j_again = cost_gradient_and_repeat(theta)
        # Where the compiled functions ran, from their outputs (not from the device asked for).
        ran_on = {j0.device, gradient.device, j_again.device}
        j0, j_again, gradient = float(j0), float(j_again), gradient.numpy().astype(np.float64)
        if j0 != j_again:
            raise NondeterministicCostError(describe_randomness(j0, j_again))
        rng = np.random.default_rng(seed)

        if mode == "directional":
            probes, autodiff, h_plus, h_minus, directions = probes_lib.directions(
                theta0, gradient, offsets, num_directions, epsilon, rng
            )
            j_plus, j_minus = _evaluate_directions(
                cost_directions, theta, directions, h_plus, batch_size, np_dtype, ran_on
            )
        else:
            probes = probes_lib.components(gradient, offsets, mode, samples_per_variable, rng)
            autodiff = gradient[probes]
            h = epsilon * np.maximum(1.0, np.abs(theta0[probes]))
            h_plus = ((theta0[probes] + h).astype(np_dtype) - theta0[probes]).astype(np.float64)
            h_minus = (theta0[probes] - (theta0[probes] - h).astype(np_dtype)).astype(np.float64)
            j_plus, j_minus = _evaluate_components(
                cost_components, theta, groups, offsets, probes, h_plus, h_minus, batch_size,
                np_dtype, ran_on,
            )

    numerical = (j_plus - j_minus) / (h_plus + h_minus)
    forward = (j_plus - j0) / h_plus
    backward = (j0 - j_minus) / h_minus
    jump = np.abs(forward - backward)
    # J's round-off eps max(1, |J|), seen through the smaller of the two steps.
    unit = np.finfo(np_dtype).eps * max(1.0, abs(j0)) / np.minimum(h_plus, h_minus)
    noise = 64 * unit
    is_kink = (jump > 1e-3 * np.maximum(np.abs(forward), np.abs(backward)) + noise) & (
        np.minimum(np.abs(autodiff - forward), np.abs(autodiff - backward)) < jump / 4
    )

    flat_probes = probes[:, 0] if mode == "directional" else probes
    variable_of = np.searchsorted(offsets, flat_probes, side="right") - 1
    if mode == "directional":
        labels = [f"u{d}" for d in probes[:, 1]]
    else:
        labels = [
            tuple(int(i) for i in np.unravel_index(p - offsets[v], shapes[v]))
            for p, v in zip(probes, variable_of)
        ]

    def component(k):
        return report_lib.Component(
            variable=names[variable_of[k]],
            index=labels[k],
            autodiff=float(autodiff[k]),
            numerical=float(numerical[k]),
            forward=float(forward[k]),
            backward=float(backward[k]),
        )

    smooth = ~is_kink
    round_off = _ROUND_OFF_UNITS * unit
    correct_threshold, wrong_threshold, note = thresholds(dtype)
    per_variable = []
    for v, name in enumerate(names):
        mine = (variable_of == v) & smooth
        round_off_norm = float(np.linalg.norm(round_off[mine]))
        per_variable.append(
            report_lib.VariableDifference(
                name=name,
                shape=shapes[v],
                checked=int(mine.sum()),
                kinks=int(((variable_of == v) & is_kink).sum()),
                autodiff_norm=float(np.linalg.norm(autodiff[mine])),
                numerical_norm=float(np.linalg.norm(numerical[mine])),
                round_off_norm=round_off_norm,
                relative_difference=report_lib.relative_difference(
                    numerical[mine], autodiff[mine], floor=round_off_norm / correct_threshold
                ),
            )
        )
    per_variable.sort(key=lambda d: -d.relative_difference)
    errors = np.where(smooth, np.abs(autodiff - numerical), -1.0)
    worst = [k for k in np.argsort(-errors, kind="stable")[:k_worst] if smooth[k]]

    overall = report_lib.relative_difference(numerical[smooth], autodiff[smooth])
    # The worst figure decides: in the overall one, a wrong gradient of a variable with small
    # gradients is diluted by the large, right gradients of the others.
    verdict_difference, verdict_from = overall, "overall"
    if per_variable and per_variable[0].relative_difference > overall:
        verdict_difference, verdict_from = per_variable[0].relative_difference, per_variable[0].name
    if verdict_difference <= correct_threshold:
        verdict = "correct"
    elif verdict_difference <= wrong_threshold:
        verdict = "suspect"
    else:
        verdict = "wrong"
    return report_lib.GradientCheckReport(
        mode=mode,
        dtype=dtype.name,
        epsilon=epsilon,
        cost=j0,
        relative_difference=overall,
        verdict=verdict,
        verdict_difference=verdict_difference,
        verdict_from=verdict_from,
        correct_threshold=correct_threshold,
        wrong_threshold=wrong_threshold,
        threshold_note=note,
        variables=tuple(per_variable),
        worst=tuple(component(k) for k in worst),
        kinks=tuple(component(k) for k in np.flatnonzero(is_kink)),
        evaluations=3 + 2 * len(probes),
        device=device or "",
        ran_on=", ".join(sorted(ran_on)),
    )


def _variable_groups(offsets):
    """(first, last + 1) variable ranges: a new group at every variable with >= 10% of θ."""
    sizes = np.diff(offsets)
    starts = [0] + [v for v in range(1, len(sizes)) if sizes[v] >= _GROUP_FRACTION * offsets[-1]]
    return list(zip(starts, starts[1:] + [len(sizes)]))


def _evaluate_components(cost_components, theta, groups, offsets, probes, h_plus, h_minus,
                         batch_size, np_dtype, ran_on):
    """J(θ + h⁺ e_i) and J(θ − h⁻ e_i) for every probe; adds the devices of the results to the
    set `ran_on`.

    Each of the ⌈2P / batch_size⌉ calls takes the same number of perturbations of each group
    (⌈its 2P_g / calls⌉, the last calls padded with zero steps whose J is discarded), so the
    function is traced once.
    """
    index = np.concatenate([probes, probes]).astype(np.int64)
    step = np.concatenate([h_plus, -h_minus]).astype(np_dtype)
    group_starts = np.array([offsets[first] for first, _ in groups])
    group_of = np.searchsorted(group_starts, index, side="right") - 1
    calls = -(-len(index) // batch_size)
    members = [np.flatnonzero(group_of == g) for g in range(len(groups))]
    shares = [max(1, -(-len(m) // calls)) for m in members]
    costs = np.zeros(len(index))
    for call in range(calls):
        indices, steps, rows = [], [], []
        for g, (m, share) in enumerate(zip(members, shares)):
            mine = m[call * share : (call + 1) * share]
            padding = share - len(mine)
            local = index[mine] - group_starts[g]  # within the group's slice of θ
            indices.append(np.concatenate([local, np.zeros(padding, np.int64)]))
            steps.append(np.concatenate([step[mine], np.zeros(padding, np_dtype)]))
            rows.append(mine)
        for mine, batch in zip(rows, cost_components(theta, indices, steps)):
            ran_on.add(batch.device)
            costs[mine] = batch.numpy()[: len(mine)]
    return costs[: len(probes)], costs[len(probes) :]


def _evaluate_directions(cost_directions, theta, directions, steps, batch_size, np_dtype, ran_on):
    """J(θ ± h u) for every direction, building the (K, N) perturbations one batch at a time;
    adds the devices of the results to the set `ran_on`."""
    signed = [(s, start, u, h) for s in (1.0, -1.0) for (start, u), h in zip(directions, steps)]
    batch_size = min(batch_size, len(signed))
    n = int(theta.shape[0])
    costs = []
    for k in range(0, len(signed), batch_size):
        perturbations = np.zeros((batch_size, n), np_dtype)
        for row, (s, start, u, h) in enumerate(signed[k : k + batch_size]):
            perturbations[row, start : start + u.size] = s * h * u
        batch = cost_directions(theta, tf.constant(perturbations))
        ran_on.add(batch.device)
        costs.append(batch.numpy())
    costs = np.concatenate(costs)[: len(signed)].astype(np.float64)
    return costs[: len(directions)], costs[len(directions) :]
