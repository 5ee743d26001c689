"""tfnet's benchmarks: each times the project's real code against its anchors on one harness.

Not part of the installed package: run them from the repository with ``scripts/bench_*.py``,
or all of them, their tables written to one page, with ``scripts/bench_all.py``.

- ``harness``: contenders in alternating rounds, median speed-ups, goals, one Markdown table;
- ``training``: the training loop against Keras ``fit`` (with and without XLA), JAX + Optax,
  numpy, its own matrix products and the matmul peak;
- ``runs``: whole runs as a user meets them: the main job, a default mnist run against Keras
  ``fit`` (whole processes), the course net against float64 numpy;
- ``optimizers``: each of tfnet's optimisers against its Keras twin, in the real training step;
- ``batch_norm``: tfnet's ``BatchNorm`` against ``keras.layers.BatchNormalization``;
- ``gradcheck``: the gradient checker against ``tf.test.compute_gradient``;
- ``input``: the training loop's input work alone against the whole loop;
- ``jax_mlp`` (the JAX + Optax contender, needs the ``bench`` extra), ``keras_run`` (Keras ``fit``
  as a whole process), ``suite`` (every benchmark, and the page of their results).
- ``trials``: trials on Ray Tune (``tfnet.trials``) against the process pool tfnet ran them in.
"""
