"""Bias / variance diagnosis from training and dev error (docs/methods.md §1)."""


def diagnose(train_error, dev_error, best_error=0.0, tolerance=0.02):
    """Names the problem that the errors point to, with the course's remedies.

    High bias: training error far above the best achievable error (``train − best > tolerance``).
    High variance: dev error far above training error (``dev − train > tolerance``). Both can
    hold at once.

    Args:
      train_error, dev_error: error rates in [0, 1] (1 − accuracy).
      best_error: the best achievable (e.g. human or Bayes) error. Default 0.0.
      tolerance: the gap, in error rate, counted as "far". Default 0.02 (2 points).

    Returns:
      One line of text.
    """
    bias = train_error - best_error > tolerance
    variance = dev_error - train_error > tolerance
    figures = f"train error {train_error:.2%}, dev error {dev_error:.2%}, best {best_error:.2%}"
    if bias and variance:
        verdict = ("high bias and high variance: first a bigger network or longer training, "
                   "then more data or regularisation")
    elif bias:
        verdict = "high bias: try a bigger network, training longer or another architecture"
    elif variance:
        verdict = "high variance: try more data or regularisation (L2, dropout, augmentation)"
    else:
        verdict = "low bias and low variance"
    return f"{verdict} ({figures})"
