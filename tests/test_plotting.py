"""The shared matplotlib loader: headless, and a missing extra is named."""

import sys

import matplotlib
import pytest

from tfnet import plotting


def test_pyplot_is_headless():
    plt = plotting.pyplot()
    assert plt.get_backend().lower() == "agg"
    assert matplotlib.get_backend().lower() == "agg"


def test_missing_matplotlib_names_the_plots_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(ImportError, match=r"Plots need matplotlib, the 'plots' extra: pip install 'tfnet\[plots\]'"):
        plotting.pyplot()
