"""bayesperf.diagnostics: count-weighted LOO and compare agree with ArviZ on expanded data."""

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayesperf
from bayesperf.diagnostics import compare, loo
from bayesperf.models import LatencyModel
from bayesperf.simulate import Call, CallGraph, LogNormal, simulate_traces
from bayesperf.summaries import summarize_latency

FAST = {"draws": 300, "tune": 300, "chains": 2, "progressbar": False}


def _tree(ll: np.ndarray, counts: np.ndarray, name: str = "latency") -> xr.DataTree:
    """A fit-like DataTree: log-likelihood per cell and the cell counts."""
    chains, draws, _ = ll.shape
    return xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset({"mu": (("chain", "draw"), np.zeros((chains, draws)))}),
            "log_likelihood": xr.Dataset({name: (("chain", "draw", "cell"), ll)}),
            "observed_data": xr.Dataset({name: ("cell", counts)}),
        }
    )


def _expanded(tree: xr.DataTree) -> xr.DataTree:
    """The same fit with every cell repeated once per unit (what ArviZ sees unweighted)."""
    ll = tree.log_likelihood["latency"].to_numpy()
    counts = tree.observed_data["latency"].to_numpy()
    return _tree(np.repeat(ll, counts, axis=-1), np.ones(counts.sum(), dtype=np.int64))


@pytest.fixture(scope="module")
def trees():
    """Three synthetic models' pointwise log-likelihoods over the same 40 weighted cells."""
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 4, size=40)
    base = rng.normal(-2.0, 1.0, size=40)
    out = {}
    for name, shift, noise in (("a", 0.0, 0.05), ("b", -0.15, 0.1), ("c", -0.05, 0.3)):
        cell_shift = shift + rng.normal(0, 0.2, size=40)
        ll = base + cell_shift + rng.normal(0, noise, size=(2, 500, 40))
        out[name] = _tree(ll, counts)
    return out


def test_weighted_loo_equals_arviz_on_expanded_cells(trees):
    ours = loo(trees["b"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        theirs = az.loo(_expanded(trees["b"]))
    assert ours.n_units == trees["b"].observed_data["latency"].sum()
    np.testing.assert_allclose(ours.elpd, theirs.elpd, rtol=1e-10)
    np.testing.assert_allclose(ours.se, theirs.se, rtol=1e-10)
    np.testing.assert_allclose(ours.p_loo, theirs.p, rtol=1e-8)


def test_compare_equals_arviz_compare_on_expanded_cells(trees):
    ours = compare(trees)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        theirs = az.compare({k: _expanded(v) for k, v in trees.items()}, round_to="None")
    assert list(ours.index) == list(theirs.index)
    assert list(ours.columns) == list(theirs.columns)
    for column in ("rank", "elpd", "se", "p", "elpd_diff", "dse", "p_worse"):
        np.testing.assert_allclose(
            ours[column].astype(float), theirs[column].astype(float), rtol=1e-7, atol=1e-9
        )
    # Stacking is an optimisation: both reach the optimum to the solver's tolerance.
    np.testing.assert_allclose(ours["weight"], theirs["weight"].astype(float), atol=2e-3)
    assert list(ours["diag_diff"]) == list(theirs["diag_diff"])


def test_compare_refuses_different_data_and_bad_arguments(trees):
    other = _tree(trees["a"].log_likelihood["latency"].to_numpy(), np.full(40, 2))
    with pytest.raises(ValueError, match="different data or binning"):
        compare({"a": trees["a"], "other": other})
    renamed = _tree(trees["a"].log_likelihood["latency"].to_numpy(), np.full(40, 2), "paths")
    with pytest.raises(ValueError, match="score different data"):
        compare({"a": trees["a"], "renamed": renamed})
    with pytest.raises(ValueError, match="at least two"):
        compare({"a": trees["a"]})
    with pytest.raises(ValueError, match="unknown method"):
        compare(trees, method="bma")
    bare = xr.DataTree.from_dict({"posterior": xr.Dataset({"mu": (("chain", "draw"), [[0.0]])})})
    with pytest.raises(ValueError, match="no pointwise log-likelihood"):
        compare({"a": trees["a"], "bare": bare})


def test_pseudo_bma_weights_follow_elpd(trees):
    table = compare(trees, method="pseudo-bma")
    z = table["elpd"] - table["elpd"].max()
    np.testing.assert_allclose(table["weight"], np.exp(z) / np.exp(z).sum())


@pytest.mark.filterwarnings("ignore::bayesperf.models.ConvergenceWarning")
def test_lognormal_data_prefer_the_lognormal_family():
    """Fit on the same summary, the true family wins LOO; other data are refused."""
    graph = CallGraph(
        root="front",
        root_latency=LogNormal(40.0, 0.6),
        calls={"front": [Call("cart", 1.0, LogNormal(2.0, 0.8))], "cart": []},
    )
    spans = simulate_traces(graph, 1500, random_seed=5).spans
    summary = summarize_latency(spans)
    lognormal = LatencyModel("lognormal").fit(summary, random_seed=1, **FAST)
    gamma = LatencyModel("gamma").fit(summary, random_seed=1, **FAST)
    table = bayesperf.compare({"lognormal": lognormal, "gamma": gamma})
    assert table.index[0] == "lognormal"
    # 3,000 spans from a lognormal with sd 0.6-0.8: gamma is worse by many standard errors.
    assert table.loc["gamma", "elpd_diff"] < -4 * table.loc["gamma", "dse"]
    assert table.loc["lognormal", "weight"] > 0.9
    assert isinstance(table, pd.DataFrame)
    half = LatencyModel().fit(spans.iloc[::2], random_seed=1, **FAST)
    with pytest.raises(ValueError, match="different data or binning"):
        bayesperf.compare({"all": lognormal, "half": half})


def test_convergence_statistics_equal_arviz():
    """Vectorised R-hat and ESS equal ArviZ's on mixing, sticky, stuck, tied and constant draws."""
    from bayesperf.diagnostics import convergence_statistics

    rng = np.random.default_rng(1)
    chains, draws = 4, 301  # odd: split chains drop the middle draw
    white = rng.normal(size=(chains, draws, 20))
    ar = np.zeros((chains, draws, 20))
    noise = rng.normal(size=ar.shape)
    phi = np.linspace(0, 0.99, 20)
    for t in range(1, draws):
        ar[:, t] = phi * ar[:, t - 1] + noise[:, t]
    offset = rng.normal(size=(chains, draws, 5)) + np.arange(chains)[:, None, None]
    ties = rng.integers(0, 3, size=(chains, draws, 5)).astype(float)
    constant = np.ones((chains, draws, 2))
    walk = np.cumsum(rng.normal(size=(chains, draws, 5)), axis=1)
    x = np.concatenate([white, ar, offset, ties, constant, walk], axis=2)
    tree = xr.DataTree.from_dict({"posterior": xr.Dataset({"a": (("chain", "draw", "p"), x)})})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # ArviZ: NaN R-hat of constants
        expected = [
            az.rhat(tree).to_dataset()["a"].to_numpy(),
            az.ess(tree, method="bulk").to_dataset()["a"].to_numpy(),
            az.ess(tree, method="tail").to_dataset()["a"].to_numpy(),
        ]
    for ours, theirs in zip(convergence_statistics(x), expected, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, equal_nan=True)


def test_convergence_statistics_in_blocks_equal_one_block():
    """Over 256 parameters the columns are split into threaded blocks: same numbers,
    including tied and constant columns at block edges."""
    from bayesperf.diagnostics import _convergence_block, convergence_statistics

    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 200, 600))
    x[..., 255:258] = np.round(x[..., 255:258])  # ties across the first block edge
    x[..., 511:513] = 1.0  # constant columns across the second
    for blocked, whole in zip(convergence_statistics(x), _convergence_block(x), strict=True):
        np.testing.assert_array_equal(blocked, whole)
