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


def runnable(names, data_dir=None):
    """``(runnable names, {skipped name: reason})``: the experiments whose data are there.

    Only batch_norm needs data from ``data_dir`` (mnist_t10k, read offline); the others
    generate theirs.
    """
    from tfnet import data  # Imports TensorFlow: only when something runs.

    skipped = {}
    if "batch_norm" in names:
        try:
            data.check_available("mnist_t10k", data_dir)
        except data.DatasetNotFoundError as error:
            skipped["batch_norm"] = f"it needs mnist_t10k in --data_dir={data_dir}: {error}"
    return tuple(name for name in names if name not in skipped), skipped


def run(name, output_dir, quick=False, data_dir=None, verbose=1):
    """Runs the experiment registered as ``name`` (see ``runner.run``); returns its ``runner.Report``.

    Raises:
      ValueError: ``name`` is not one of ``NAMES``.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {', '.join(NAMES)}. Received: experiment={name!r}")
    from tfnet.experiments import runner  # Imports TensorFlow: only when something runs.

    return runner.run(EXPERIMENTS[name], output_dir, quick=quick, data_dir=data_dir, verbose=verbose)


__all__ = ["EXPERIMENTS", "NAMES", "Experiment", "run", "runnable"]
