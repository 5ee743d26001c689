"""The user's own actions: callables run after each evaluation (Orbit's ``train_actions``)."""


class UserActions:
    """After a call that ended with an evaluation, each of ``callables`` as
    ``action(metrics)``, ``metrics`` the evaluated epoch's record (epoch, step, train and dev
    loss and accuracy, learning_rate, seconds) with ``run_dir``. Placed after the checkpoint
    action, so the checkpoint due at that step, if any, is written when they run."""

    def __init__(self, evaluation, callables, run_dir):
        self.evaluation, self.callables, self.run_dir = evaluation, tuple(callables), run_dir

    def __call__(self, output):
        if self.evaluation.record is None:
            return
        for action in self.callables:
            action(dict(self.evaluation.record, run_dir=self.run_dir))
