"""The course's 2-D sets, generated from a seed: training runs anywhere with no download."""

import numpy as np

from tfnet.data.splits import ArraySplit, DatasetInfo, Splits

EMBEDDED_DATASETS = ("moons", "circles", "flower")

# Sizes of the embedded sets: (training examples before the dev split, test examples).
SIZES = {"moons": (1000, 250), "circles": (1000, 250), "flower": (400, 200)}


def make_embedded(name, num_examples=None, seed=0, noise=None):
    """Generates one of the course's 2-D sets.

    - ``moons``: two interleaving half circles (noise σ 0.2 by default);
    - ``circles``: two concentric circles, radii 1 and 0.5 (noise σ 0.08);
    - ``flower``: the course's planar "flower": r = 4 sin(4t) + noise, two classes of petals
      (noise σ 0.2).

    Args:
      name: one of ``EMBEDDED_DATASETS``.
      num_examples: m, the number of examples (default: the training size of the set).
      seed: seed of the generator; the same seed gives the same set on every machine.
      noise: standard deviation of the Gaussian noise (default per set, above).

    Returns:
      ``(x, y)``: float32 array of shape (m, 2) and int64 labels in {0, 1} of shape (m,),
      in random order.
    """
    if name not in EMBEDDED_DATASETS:
        raise ValueError(
            f"name must be one of {', '.join(EMBEDDED_DATASETS)}. Received: name={name!r}"
        )
    m = SIZES[name][0] if num_examples is None else int(num_examples)
    if m < 2:
        raise ValueError(f"num_examples must be at least 2. Received: num_examples={num_examples}")
    rng = np.random.default_rng(seed)
    half = m // 2
    sizes = (half, m - half)
    if name == "moons":
        sigma = 0.2 if noise is None else noise
        t0, t1 = rng.uniform(0, np.pi, sizes[0]), rng.uniform(0, np.pi, sizes[1])
        x0 = np.stack([np.cos(t0), np.sin(t0)], axis=1)
        x1 = np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], axis=1)
    elif name == "circles":
        sigma = 0.08 if noise is None else noise
        t0, t1 = rng.uniform(0, 2 * np.pi, sizes[0]), rng.uniform(0, 2 * np.pi, sizes[1])
        x0 = np.stack([np.cos(t0), np.sin(t0)], axis=1)
        x1 = 0.5 * np.stack([np.cos(t1), np.sin(t1)], axis=1)
    else:  # flower
        sigma = 0.2 if noise is None else noise
        petals = []
        for label, size in enumerate(sizes):
            t = np.linspace(label * 3.12, (label + 1) * 3.12, size) + rng.normal(0, sigma, size)
            r = 4 * np.sin(4 * t) + rng.normal(0, sigma, size)
            petals.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
        x0, x1 = petals
    x = np.concatenate([x0, x1])
    if name != "flower":  # The flower's noise is already in its angle and radius.
        x = x + rng.normal(0, sigma, (m, 2))
    y = np.concatenate([np.zeros(sizes[0]), np.ones(sizes[1])]).astype(np.int64)
    order = rng.permutation(m)
    return x[order].astype(np.float32), y[order]


def load_embedded(name, dev_fraction, seed=0, num_examples=None):
    """``Splits`` of an embedded set: ``num_examples`` (default: the set's size) for train and
    dev, drawn from ``seed``, the dev split their tail (as TFDS' ``train[80%:]`` would cut it:
    the examples are in random order already), and a test set of the set's size from
    ``seed + 1``."""
    x, y = make_embedded(name, num_examples, seed=seed)
    x_test, y_test = make_embedded(name, num_examples=SIZES[name][1], seed=seed + 1)
    num_train = int(round(len(x) * (1 - dev_fraction)))  # TFDS rounds slice boundaries so
    info = DatasetInfo(name, 2, (2,), num_train, len(x) - num_train, len(x_test))
    return Splits(ArraySplit(x[:num_train], y[:num_train]), ArraySplit(x[num_train:], y[num_train:]),
                  ArraySplit(x_test, y_test), info)
