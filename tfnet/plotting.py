"""matplotlib, loaded headless, for every module that writes figures.

matplotlib is the optional ``plots`` extra; ``pyplot()`` imports it only when a figure is drawn,
with the Agg backend (files only, no display), and says which extra to install when it is
missing.
"""


def pyplot():
    """Returns ``matplotlib.pyplot`` on the Agg backend.

    Raises:
      ImportError: matplotlib is not installed (naming the ``plots`` extra).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; no display needed
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            "Plots need matplotlib, the 'plots' extra: pip install 'tfnet[plots]'"
        ) from error
    return plt
