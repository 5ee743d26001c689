"""Whether a run's training loop is compiled by XLA (``--jit_compile``), and what that costs.

XLA compiles the whole K-step loop into one program: the graph executor's per-op dispatch (tens
of small ops a step) is gone and the element-wise work (activations, the optimiser's update) is
fused, so each step is cheaper; but compiling takes seconds before the first step. "auto" compiles
when, by a model of both measured on this project's 2-core CPU (``benchmarks/``, issue 26), the
run's steps save more than compiling costs:

    XLA  ⇔  total_steps · saving(P) > COMPILE_SECONDS,   saving(P) = min(S₀ + s·P, S_max)

with P the model's trainable parameters: about 0.2 ms a step for a tiny network (dispatch) plus
6 ns per parameter (fused element-wise work), at most 2.5 ms, against about 2 s of compiling.
So the course's 2-D networks need about 10,000 steps, an MLP 784-64-32-10 about 4,000 and
784-256-128-10 about 1,200 (a 15-epoch mnist_t10k run has 1,500: compiled). The rule reads the
config and the model only — never a timing taken during the run — so a run is bit-identical to
itself (XLA changes the last bits).

Never compiled by "auto": under a strategy with several replicas (XLA compiles one device's
program), with an augmentation that has no XLA kernel (rotate, zoom), and for a model with
convolution or pooling layers, whose backward convolutions XLA's CPU backend runs as naive loops
inside a while loop (about 25× slower a step than TensorFlow's own kernels).
"""

import tensorflow as tf

COMPILE_SECONDS = 2.0
SAVING_SECONDS = 2e-4  # S₀: a step's dispatch, saved whatever the network
SAVING_PER_PARAMETER = 6e-9  # s
MAX_SAVING_SECONDS = 2.5e-3  # S_max: beyond it the matrix products dominate


def saving_per_step(parameters):
    """saving(P): the seconds XLA saves a step of a network of P trainable parameters."""
    return min(SAVING_SECONDS + SAVING_PER_PARAMETER * parameters, MAX_SAVING_SECONDS)


def pays_off(total_steps, parameters):
    """Whether compiling pays for itself over ``total_steps`` steps (the module's rule)."""
    return total_steps * saving_per_step(parameters) > COMPILE_SECONDS


def convolutional(model):
    """Whether ``model`` has a convolution or pooling layer (by its class, at any depth)."""
    return any("Conv" in type(layer).__name__ or "Pool" in type(layer).__name__
               for layer in model._flatten_layers(include_self=False))


def use_xla(config, strategy, total_steps, model):
    """``jit_compile``'s decision for a run: "on", "off", or "auto" by the module's rule."""
    if config.jit_compile != "auto":
        return config.jit_compile == "on"
    from tfnet import augment as augment_lib

    one_device = strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy()
    if not one_device or strategy.num_replicas_in_sync != 1:
        return False
    if config.augment and not augment_lib.compiles_with_xla(config.augment):
        return False
    if convolutional(model):
        return False
    parameters = sum(int(w.shape.num_elements()) for w in model.trainable_weights)
    return pays_off(total_steps, parameters)
