"""tfnet's benchmarks: each times the project's real code against its anchors on one harness.

Not part of the installed package: run them from the repository with ``scripts/bench_*.py``.

- ``harness``: contenders in alternating rounds, median speed-ups, goals, one Markdown table;
- ``training``: the training loop against Keras ``fit``, numpy, its own matrix products and the
  matmul peak;
- ``optimizers``: each of tfnet's optimisers against its Keras twin, in the real training step;
- ``batch_norm``: tfnet's ``BatchNorm`` against ``keras.layers.BatchNormalization``;
- ``gradcheck``: the gradient checker against ``tf.test.compute_gradient``;
- ``input``: the training loop's input work alone against the whole loop;
- ``trials``: trials on Ray Tune (``tfnet.trials``) against the process pool tfnet ran them in.
"""
