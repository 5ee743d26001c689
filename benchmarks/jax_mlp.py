"""The JAX + Optax anchor: the same MLP, data and Adam as tfnet's, one ``jax.jit`` per epoch.

What a JAX user writes for speed on one device: the training split on the device, and one
compiled call per epoch, a ``jax.lax.scan`` of the training step over the epoch's mini-batches
(gathered inside the call from the epoch's order, drawn on the host as tfnet draws its orders
outside its compiled loop), then, when the last mini-batch is smaller, one more step on it. The
step is tfnet's: the raw input normalised by the training statistics, ``(x − μ)/σ``, then
``a[l] = relu(a[l−1] W[l] + b[l])``, logits ``z = a[L−1] W[L] + b[L]``, the mean softmax
cross-entropy ``J``, ``optax.adam`` (ε outside the root, bias-corrected: the course's and
tfnet's Adam). Weights start as tfnet's "he" does, ``randn · √(2/n_in)``, biases at 0.

Optional: JAX and Optax are the ``bench`` extra (``pip install -e .[bench]``), never a dependency
of tfnet; ``available()`` says whether they are installed.
"""

import importlib.util

import numpy as np


def available():
    """Whether JAX and Optax can be imported (the ``bench`` extra is installed)."""
    return all(importlib.util.find_spec(name) is not None for name in ("jax", "optax"))


class JaxMLP:
    """Trains the MLP ``layer_sizes`` with Adam on one training split held on the device.

    Args:
      features: the training split's raw features, [m, ...] (flattened here).
      labels: its integer labels, [m].
      layer_sizes: ``n_0, n_1, …, n_L`` (``n_0`` the flattened input, ``n_L`` the classes).
      mean, variance: per-feature training statistics μ, σ² of the flattened input.
      batch_size: b.
      learning_rate: Adam's α.
      seed: seed of the initial weights and of the epochs' orders. Default 0.
    """

    def __init__(self, features, labels, layer_sizes, mean, variance, batch_size, learning_rate,
                 seed=0):
        import jax
        import jax.numpy as jnp
        import optax

        m = len(labels)
        self.num_examples, self.batch_size = m, int(batch_size)
        self._features = jax.device_put(np.asarray(features, np.float32).reshape(m, -1))
        self._labels = jax.device_put(np.asarray(labels, np.int32))
        self._rng = np.random.default_rng(seed)
        self.params = [
            (jnp.asarray(self._rng.standard_normal((n, k)) * np.sqrt(2.0 / n), jnp.float32),
             jnp.zeros(k, jnp.float32))
            for n, k in zip(layer_sizes[:-1], layer_sizes[1:])
        ]
        shift = jnp.asarray(mean, jnp.float32)
        scale = jnp.asarray(1.0 / np.sqrt(variance), jnp.float32)
        optimizer = optax.adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8)
        self.opt_state = optimizer.init(self.params)

        def cost(params, x, y):
            a = (x - shift) * scale
            for w, b in params[:-1]:
                a = jax.nn.relu(a @ w + b)
            w, b = params[-1]
            return optax.softmax_cross_entropy_with_integer_labels(a @ w + b, y).mean()

        def step(carry, indices):
            params, opt_state = carry
            value, gradients = jax.value_and_grad(cost)(
                params, self._features[indices], self._labels[indices])
            updates, opt_state = optimizer.update(gradients, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), value

        full_batches = m // self.batch_size

        def epoch(params, opt_state, order):
            full = order[:full_batches * self.batch_size].reshape(full_batches, self.batch_size)
            carry, costs = jax.lax.scan(step, (params, opt_state), full)
            if m % self.batch_size:  # the smaller last mini-batch, a shape of its own
                carry, last = step(carry, order[full_batches * self.batch_size:])
                costs = jnp.append(costs, last)
            return (*carry, costs)

        self._epoch = jax.jit(epoch, donate_argnums=(0, 1))

    def epoch(self):
        """Trains one epoch in one compiled call, its order a fresh permutation; returns the
        mini-batch costs, on the device (``block_until_ready`` waits for them)."""
        order = self._rng.permutation(self.num_examples).astype(np.int32)
        self.params, self.opt_state, costs = self._epoch(self.params, self.opt_state, order)
        return costs

    def epochs(self, count):
        """Trains ``count`` epochs and waits for the last one to finish."""
        for _ in range(count):
            costs = self.epoch()
        costs.block_until_ready()
