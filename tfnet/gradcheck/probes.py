"""Which components (or directions) of θ a gradient check perturbs, per mode.

θ is all variables flattened in order; `offsets[v]:offsets[v + 1]` is variable v's slice.
"""

import numpy as np


def components(gradient, offsets, mode, samples_per_variable, rng):
    """Flat indices of the checked components: all, or per variable the `samples_per_variable`
    largest |dθ| plus as many others drawn at random."""
    if mode == "full":
        return np.arange(offsets[-1])
    chosen = []
    for start, stop in zip(offsets[:-1], offsets[1:]):
        order = np.argsort(-np.abs(gradient[start:stop]), kind="stable")
        largest, rest = order[:samples_per_variable], order[samples_per_variable:]
        drawn = rng.choice(rest, size=min(samples_per_variable, rest.size), replace=False)
        chosen.append(start + np.sort(np.concatenate([largest, drawn])))
    return np.concatenate(chosen)


def directions(theta0, gradient, offsets, num_directions, epsilon, rng):
    """Random unit directions, `num_directions` per variable, each supported on that variable.

    Returns probes as (flat offset of the variable, direction number) rows, g·u, the steps, and
    the directions as (start, unit vector) pairs.
    """
    probes, autodiff, steps, directions = [], [], [], []
    for start, stop in zip(offsets[:-1], offsets[1:]):
        h = epsilon * max(1.0, float(np.max(np.abs(theta0[start:stop]))))
        for d in range(num_directions):
            u = rng.standard_normal(stop - start)
            u /= np.linalg.norm(u)
            probes.append((start, d))
            autodiff.append(float(gradient[start:stop] @ u))
            steps.append(h)
            directions.append((start, u))
    steps = np.array(steps)
    return np.array(probes), np.array(autodiff), steps, steps, directions
