"""The run directory's policy: resume a run, refuse to mix two, or start over when told.

A ``model_dir`` with a ``config.json`` holds a run. Starting on it with ``resume`` continues
that run, provided the configuration differs only in ``RESUMABLE_CHANGES`` (more epochs,
other outputs or strategy); ``resume=False`` starts over only with ``overwrite``, which deletes
the old run. The check reads only ``config.json``, before anything is written or loaded.
"""

import dataclasses
import json
import os
import shutil

# Fields that may change when a run resumes; any other difference is a different run.
RESUMABLE_CHANGES = frozenset({
    "epochs", "export", "export_dir", "export_name", "log_every_steps", "histograms",
    "checkpoint_every_steps", "checkpoint_every_seconds", "keep_checkpoints", "resume",
    "overwrite", "on_nonfinite", "eval_every_epochs", "steps_per_loop", "jit_compile",
    "early_stopping_patience", "early_stopping_min_delta", "best_error", "model_dir",
    "strategy", "tpu", "cpu_devices",  # checkpoints restore under any strategy
})



class RunDirError(ValueError):
    """``model_dir`` holds a run that this configuration must not mix with."""


def prepare(config, delete=True):
    """Applies the policy to ``config.run_dir``; raises ``RunDirError`` where runs would mix.

    Args:
      config: the run's ``TrainConfig``.
      delete: whether this process deletes an overwritten run (False on non-chief workers).
    """
    run_dir = config.run_dir
    saved = os.path.join(run_dir, "config.json")
    if not os.path.exists(saved):
        return
    if not config.resume:
        if not config.overwrite:
            raise RunDirError(
                f"model_dir {run_dir} already holds a run and --noresume was given: "
                "pass --overwrite to delete it, or choose another --model_dir."
            )
        if delete:
            shutil.rmtree(run_dir)
        return
    with open(saved) as f:
        previous = json.load(f)
    current = json.loads(json.dumps(dataclasses.asdict(config)))
    changed = sorted(
        name for name in current
        if name not in RESUMABLE_CHANGES and previous.get(name) != current[name]
    )
    if changed:
        details = ", ".join(f"{n}: {previous.get(n)!r} -> {current[n]!r}" for n in changed)
        raise RunDirError(
            f"model_dir {run_dir} holds a different run ({details}); resume it with its own "
            f"flags (--flagfile={os.path.join(run_dir, 'flags.txt')}), or start over with "
            "--noresume --overwrite, or choose another --model_dir."
        )
