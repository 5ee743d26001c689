"""A fair optimiser study: α tuned on dev, the chosen α rerun over seeds, on several problems.

``run(config)`` runs the protocol of ``tfnet.study.protocol`` (DeepOBS's: Schneider et al.,
2019) for every problem of ``config.problems`` (``tfnet.study.problems``) and every optimiser of
``config.optimizers`` — ours and Keras' twins, from the optimiser records — and writes the
outputs of ``tfnet.study.report`` into ``config.output_dir``. Each trial is a run of
``tfnet.training`` in a directory of its own, trained in a Ray worker (``tfnet.trials``: this
machine, or a cluster), so the study is resumable: run again, it reads the finished trials back
and runs the others; one study at a time holds ``study.lock`` there. The whole study is one Ray
Tune experiment: the seeds of a problem and optimiser start as soon as its tuning trials have
ended and its α is chosen.

    from tfnet import study
    report, paths = study.run(study.StudyConfig(problems=("moons",), seeds=3))
"""

import os

from tfnet.study.problems import Problem
from tfnet.study.protocol import StudyConfig


def run(config, cluster=None, say=print):
    """Runs the study ``config`` describes on Ray (``cluster``, a ``tfnet.trials.ClusterConfig``;
    default: this machine, a CPU per trial); returns (the Markdown report, {output: path}).

    Raises:
      locks.LockHeldError: another study is running in ``config.output_dir``.
      ValueError: ``cluster`` cannot be used.
      runner.TrialsFailedError: trials failed (not diverged); the others are kept.
    """
    from tfnet import locks, trials
    from tfnet.study import protocol, report, runner

    os.makedirs(config.output_dir, exist_ok=True)
    with locks.DirectoryLock.acquire(config.output_dir, "study.lock"), \
            trials.connect(cluster or trials.ClusterConfig()):
        tuning = protocol.tuning_trials(config)
        say(f"tuning: {len(tuning)} trials ({len(config.problems)} problems × "
            f"{len(config.optimizers)} optimisers × {config.lr_points} learning rates, seed 0), "
            f"then each chosen learning rate × {config.seeds} seeds")
        seeded = set()

        def seeds_of_the_chosen(rows):
            # A problem's and optimiser's seeds start as soon as its tuning trials have ended,
            # in the same Ray Tune experiment (its workers keep TensorFlow imported).
            more = []
            chosen, _ = protocol.choose_all(config, _tuning_rows(rows), partial=True)
            for pair, rate in chosen.items():
                if pair not in seeded:
                    seeded.add(pair)
                    more += protocol.seed_trials(config, {pair: rate})
            return more

        rows = runner.run_all(tuning, config, cluster, say, then=seeds_of_the_chosen)
        tuning_rows = [rows[trial] for trial in tuning]
        chosen, unchosen = protocol.choose_all(config, tuning_rows)
        seed_rows = [rows[trial] for trial in protocol.seed_trials(config, chosen)]
        return report.write(config, tuning_rows + seed_rows, chosen, unchosen)


def _tuning_rows(rows):
    return [row for trial, row in rows.items() if not trial.evaluate_test]


__all__ = ["Problem", "StudyConfig", "run"]
