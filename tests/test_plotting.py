"""The shared matplotlib loader is headless; coinciding curves stay visible."""

import matplotlib

from tfnet import plotting


def test_pyplot_is_headless():
    plt = plotting.pyplot()
    assert plt.get_backend().lower() == "agg"
    assert matplotlib.get_backend().lower() == "agg"


def test_twins_share_a_colour_and_differ_in_style_and_coinciding_lines_are_layered():
    styles = plotting.twin_styles(["gd", "momentum", "keras_sgd", "adam", "keras_adam"])
    assert styles["keras_sgd"]["color"] == styles["gd"]["color"] != styles["momentum"]["color"]
    assert styles["keras_sgd"]["linestyle"] == "--" and styles["keras_sgd"]["marker"] == "o"
    assert styles["keras_sgd"]["markerfacecolor"] == "none"  # the line under it shows through
    assert styles["keras_adam"]["color"] == styles["adam"]["color"]
    widths = [styles[name]["linewidth"] for name in ("gd", "momentum", "adam")]
    assert widths == sorted(widths, reverse=True) and len(set(widths)) == 3
