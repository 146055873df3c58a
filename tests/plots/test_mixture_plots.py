"""bayesperf.plots.mixture: the mixture figure draws what the model says."""

import matplotlib

matplotlib.use("Agg")

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import Rectangle

from bayesperf.models import ConvergenceWarning
from bayesperf.models.mixture import MixtureModel
from bayesperf.plots.mixture import plot_mixture

FAST = {"draws": 200, "tune": 300, "chains": 2, "nuts_sampler": "pymc", "progressbar": False}


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(3)
    n = 3000
    fast = rng.random(n) < 0.7
    y = np.where(fast, rng.lognormal(0.0, 0.3, n), rng.lognormal(np.log(20.0), 0.25, n))
    y[:30] = 0.0  # below the clock resolution: counted, not drawn
    spans = pd.DataFrame(
        {"caller": "gw", "callee": np.where(np.arange(n) % 2, "a", "b"), "latency": y}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return MixtureModel(2, by=("caller", "callee")).fit(spans, random_seed=1, **FAST)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_histogram_components_and_density(model, tmp_path):
    fig = plot_mixture(model, ci_prob=0.9)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    labels = [line.get_label() for line in ax.get_lines()]
    assert "mixture (posterior mean)" in labels
    assert sum(label.startswith("component ") for label in labels) == 2
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    colours = {tuple(np.round(b.get_facecolor()[:3], 3)) for b in bars}
    assert len(colours) == 2  # bars coloured by their most probable component
    # Bars are a density of log latency over the spans drawn and below: area <= 1.
    area = sum(b.get_height() * np.log((b.get_x() + b.get_width()) / b.get_x()) for b in bars)
    assert 0.98 < area <= 1.0
    assert "30 below resolution" in ax.get_title()
    # The fast component's dashed line peaks near 1 ms, the slow one's near 20 ms.
    peaks = []
    for line in ax.get_lines():
        if line.get_label().startswith("component "):
            x, y = line.get_data()
            peaks.append(x[np.argmax(y)])
    np.testing.assert_allclose(np.log(sorted(peaks)), np.log([1.0, 20.0]), atol=0.15)
    fig.savefig(tmp_path / "mixture.png", dpi=60)
    assert (tmp_path / "mixture.png").read_bytes()[:4] == b"\x89PNG"


def test_one_group_on_given_axes_and_errors(model):
    fig, (left, right) = plt.subplots(1, 2)
    assert plot_mixture(model, ("gw", "a"), ax=right) is fig
    assert right.get_title().startswith("gw → a (n=1,5")
    assert not left.has_data()
    with pytest.raises(ValueError, match="known groups"):
        plot_mixture(model, ("gw", "zz"))
    with pytest.raises(ValueError, match="ci_prob"):
        plot_mixture(model, ci_prob=0)
