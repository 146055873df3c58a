"""bayesperf.plots.plot_compare: the comparison table as a figure."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from bayesperf.plots import plot_compare


def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rank": [0, 1, 2],
            "elpd_diff": [0.0, -12.0, -40.0],
            "dse": [0.0, 3.0, 6.0],
            "elpd": [-100.0, -112.0, -140.0],
            "se": [5.0, 5.5, 6.0],
            "weight": [0.9, 0.1, 0.0],
            "p": [3.0, 2.0, 2.0],
        },
        index=["mixture", "lognormal", "gamma"],
    )


def test_points_and_labels_follow_the_table():
    import matplotlib.pyplot as plt

    fig = plot_compare(table().iloc[::-1])  # any order: drawn best first, on top
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    by_height = sorted(zip(ax.get_yticks(), labels, strict=True))
    top = by_height[-1][1]
    assert top.startswith("mixture") and "weight 0.90" in top
    elpd_line, diff_line = ax.containers[0].lines[0], ax.containers[1].lines[0]
    np.testing.assert_allclose(sorted(elpd_line.get_xdata()), [-140.0, -112.0, -100.0])
    # Differences are drawn from the best model's ELPD.
    np.testing.assert_allclose(sorted(diff_line.get_xdata()), [-140.0, -112.0])
    plt.close(fig)


def test_draws_on_a_given_axis_and_refuses_other_tables():
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2)
    assert plot_compare(table(), ax=right) is fig
    assert not left.has_data()
    with pytest.raises(ValueError, match="not a comparison table"):
        plot_compare(pd.DataFrame({"elpd": [1.0]}))
    with pytest.raises(ValueError, match="not a comparison table"):
        plot_compare(table().iloc[:0])
    plt.close(fig)
