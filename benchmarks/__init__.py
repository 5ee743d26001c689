"""tfnet's benchmarks: each times the project's real code against its anchors on one harness.

Not part of the installed package: run them from the repository with ``scripts/bench_*.py``.

- ``harness``: contenders in alternating rounds, median speed-ups, goals, one Markdown table;
- ``training``: the training loop against Keras ``fit``, numpy and the matmul peak;
"""
