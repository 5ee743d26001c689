"""The course's classic comparisons as one command (``scripts/experiments.py``).

``setups`` defines the five experiments (initialization, regularization, optimizers, lr_decay,
batch_norm) as fixed-seed ``TrainConfig`` variants; ``runner`` trains each variant with
``tfnet.training.train`` and writes the results table (markdown and CSV), the figures (``plots``)
and one TensorBoard run per variant.

    from tfnet import experiments
    report = experiments.run("initialization", "runs/experiments")
    print(report.markdown)
"""

from tfnet.experiments.setups import EXPERIMENTS, NAMES, Experiment


def run(name, output_dir, quick=False, data_dir=None, verbose=1):
    """Runs the experiment registered as ``name`` (see ``runner.run``); returns its ``runner.Report``.

    Raises:
      ValueError: ``name`` is not one of ``NAMES``.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {', '.join(NAMES)}. Received: experiment={name!r}")
    from tfnet.experiments import runner  # Imports TensorFlow: only when something runs.

    return runner.run(EXPERIMENTS[name], output_dir, quick=quick, data_dir=data_dir, verbose=verbose)


__all__ = ["EXPERIMENTS", "NAMES", "Experiment", "run"]
