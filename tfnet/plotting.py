"""matplotlib, loaded headless, for every module that writes figures.

``pyplot()`` imports matplotlib (a dependency of tfnet) only when a figure is drawn, with the Agg
backend (files only, no display).
"""


def pyplot():
    """Returns ``matplotlib.pyplot`` on the Agg backend.

    """
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def twin_styles(names):
    """``{name: matplotlib style}``: one colour per curve, and a Keras twin drawn in its
    counterpart's colour, dashed, with hollow markers, so that two curves that coincide (as our
    gradient descent and Keras' SGD do) are both visible."""
    from tfnet import optimizers

    counterpart = {twin: ours for ours, twin in optimizers.TWINS.items()}
    styles, colours = {}, iter(f"C{i}" for i in range(100))
    for name in names:
        if counterpart.get(name) in styles:
            base = styles[counterpart[name]]
            styles[name] = dict(color=base["color"], linestyle="--", linewidth=1.2, marker="o",
                                markerfacecolor="none", markersize=5)
        else:  # each line a little thinner than the one before, so that coinciding ones show
            styles[name] = dict(color=next(colours), linestyle="-",
                                linewidth=max(1.2, 3.6 - 0.6 * len(styles)))
    return styles


def plot_cost_curves(curves, path, x_label="epoch", title=None):
    """Training and dev cost of several runs: two panels, log scale, the legend outside them.

    Args:
      curves: objects with ``name``, ``epochs`` (the x values), ``train_loss`` and ``dev_loss``.
      path: the PNG to write.
      x_label: the x axis' label. Default "epoch".
      title: the figure's title, or None.
    """
    plt = pyplot()
    figure, (train_axis, dev_axis) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    styles = twin_styles([c.name for c in curves])
    for curve in curves:
        markevery = max(1, len(curve.epochs) // 12)
        train_axis.plot(curve.epochs, curve.train_loss, label=curve.name, markevery=markevery,
                        **styles[curve.name])
        dev_axis.plot(curve.epochs, curve.dev_loss, markevery=markevery, **styles[curve.name])
    train_axis.set(xlabel=x_label, ylabel="cross-entropy cost", yscale="log", title="training split")
    dev_axis.set(xlabel=x_label, yscale="log", title="dev split")
    for axis in (train_axis, dev_axis):
        axis.grid(True, which="both", alpha=0.3)
    figure.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
