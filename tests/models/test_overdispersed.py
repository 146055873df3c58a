"""OverdispersedTransitionModel: likelihood, recovery, LOO against the plain model, scale.

Fits use 2 chains (this machine has 2 cores) with seeds fixed. Tolerances are stated
per test; LOO comparisons use the weighted PSIS-LOO of ``bayesperf.loo`` (one trace's
transitions from one source is the unit, a cell stands for ``transitions`` traces),
written out here until ``bayesperf.loo`` takes any variable.
"""

import math
import time
import tracemalloc
import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytensor
import pytest
import xarray as xr
from pytensor.graph.traversal import ancestors
from scipy import special, stats

import bayesperf
from bayesperf.errors import NotFittedError
from bayesperf.models import ConvergenceWarning
from bayesperf.models.overdispersed import (
    ConcentrationPrior,
    OverdispersedTransitionModel,
    _Likelihood,
)
from bayesperf.models.transitions import (
    UNSEEN,
    TransitionModel,
    _CellLayout,
    _Posterior,
)
from bayesperf.summaries.transitions import (
    TraceTransitionCounts,
    count_trace_transitions,
    count_transitions,
)

FAST = {"chains": 2, "draws": 1000, "tune": 500, "progressbar": False}
HUB = ["cart", "currency", "product", "END"]
HUB_P = [0.3, 0.3, 0.2, 0.2]
#: Request types of the fixed-path data: the hub's choices, and how common each type is.
TYPES = {
    "browse": (["product", "product", "product", "END"], 0.4),
    "buy": (["cart", "currency", "cart", "currency", "END"], 0.3),
    "convert": (["currency", "END"], 0.2),
    "cart": (["cart", "END"], 0.1),
}


# ---------------------------------------------------------------------- helpers
def hub_traces(n_traces: int, seed: int, *, fixed: bool) -> pd.DataFrame:
    """Sequence-mode spans: frontend visits a hub target and comes back, until END.

    ``fixed=False``: every hub choice is an independent draw from ``HUB_P`` (a Markov
    chain: multinomial per-trace counts). ``fixed=True``: a request type fixes all its
    choices (strongly over-dispersed).
    """
    rng = np.random.default_rng(seed)
    names = list(TYPES)
    weights = np.array([TYPES[k][1] for k in names])
    rows = []
    for t in range(n_traces):
        if fixed:
            choices = TYPES[names[rng.choice(len(names), p=weights)]][0]
        else:
            choices = []
            while not choices or choices[-1] != "END":
                choices.append(HUB[rng.choice(4, p=HUB_P)])
        services = ["frontend"]
        for choice in choices[:-1]:
            services += [choice, "frontend"]
        rows += [(f"t{t}", s, i) for i, s in enumerate(services)]
    return pd.DataFrame(rows, columns=["trace_id", "service", "start_time"])


def dm_cells(alphas: dict[str, float], n_traces: int, seed: int) -> TraceTransitionCounts:
    """Per-trace counts drawn from a Dirichlet-multinomial per source (known α)."""
    rng = np.random.default_rng(seed)
    targets = np.array(["w", "x", "y", "z"])
    p = np.array([0.4, 0.3, 0.2, 0.1])
    rows = []
    for source, alpha in alphas.items():
        for t in range(n_traces):
            n = 2 + rng.poisson(4)
            x = rng.multinomial(n, rng.dirichlet(alpha * p))
            rows += [(t, source, target, c) for target, c in zip(targets, x, strict=True) if c]
    frame = pd.DataFrame(rows, columns=["trace", "source", "target", "count"])
    return TraceTransitionCounts.from_frame(frame, "calls")


def weighted_loo(model) -> tuple[float, np.ndarray, np.ndarray, xr.Dataset]:
    """Traces-weighted PSIS-LOO: total elpd, per-cell elpd, weights, observed cells."""
    if "log_likelihood" not in model.idata:
        model.compute_log_likelihood()
    ll = model.idata.log_likelihood["transitions"]
    observed = model.idata.observed_data.to_dataset()
    values = ll.transpose("chain", "draw", "cell").to_numpy()
    flat = values.reshape(-1, values.shape[-1])
    elpd = special.logsumexp(flat, axis=0) - np.log(flat.shape[0])
    varying = np.ptp(flat, axis=0) > 1e-12
    if varying.any():
        tree = xr.DataTree.from_dict(
            {
                "posterior": xr.Dataset({"x": (("chain", "draw"), values[..., 0])}),
                "log_likelihood": xr.Dataset(
                    {"transitions": (("chain", "draw", "cell"), values[..., varying])}
                ),
            }
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            elpd[varying] = az.loo(tree, pointwise=True).elpd_i.to_numpy()
    weights = observed["transitions"].to_numpy().astype(np.float64)
    return float(weights @ elpd), elpd, weights, observed


def loo_difference(a, b) -> tuple[float, float]:
    """elpd(a) - elpd(b) and its standard error, over the same weighted cells."""
    _, ea, wa, oa = weighted_loo(a)
    _, eb, _, ob = weighted_loo(b)
    xr.testing.assert_equal(oa, ob)  # the two models scored the same cells
    d = ea - eb
    total = wa.sum()
    mean = (wa @ d) / total
    return float(wa @ d), float(np.sqrt(total * (wa @ (d - mean) ** 2) / total))


#: The between-source sd is weakly identified (3-11 sources): its ESS can stay under the
#: 400 of ``diagnose`` at test sizes, so the tests check R-hat and divergences instead.
SMALL_HIERARCHY = pytest.mark.filterwarnings(
    f"ignore::{ConvergenceWarning.__module__}.ConvergenceWarning"
)


def assert_converged(model, hyper_rhat: float = 1.01) -> None:
    """R-hat <= 1.01 (``hyper_rhat`` for the two population parameters), no divergences."""
    table = bayesperf.diagnose(model)
    limit = np.where(table.index.str.startswith("log_concentration"), hyper_rhat, 1.01)
    assert (table["r_hat_max"] <= limit).all() and (table["divergences"] == 0).all(), table


def fit(data, *, seed: int, mode: str = "sequence", **kwargs) -> OverdispersedTransitionModel:
    options = {**FAST, **kwargs}
    return OverdispersedTransitionModel(mode=mode).fit(data, random_seed=seed, **options)


# ---------------------------------------------------------------- likelihood
def test_likelihood_is_the_dirichlet_multinomial_and_tends_to_the_multinomial():
    """Exact to 1e-9 against scipy for α from 1e-3 to 1e3; the multinomial at α = 1e12."""
    frame = pd.DataFrame(
        {
            "trace": [0, 0, 0, 1, 1, 2, 3, 3],
            "source": ["a"] * 6 + ["b"] * 2,
            "target": ["b", "c", "END", "b", "c", "c", "END", "a"],
            "count": [3, 1, 2, 40, 7, 1, 2, 250],
        }
    )
    cells = TraceTransitionCounts.from_frame(frame)
    post = _Posterior.build(cells.to_counts(), bayesperf.models.TransitionPrior(), True)
    layout = _CellLayout.build(post, cells, True)
    lik = _Likelihood.build(layout)
    p = post.a / post.a0[post.entry_row]  # any point of the simplex rows
    for alpha in (1e-3, 0.5, 7.0, 1e3, 1e12):
        theta = np.full((1, len(post.row_code)), -math.log(alpha))
        got = lik.cells(np.log(p)[None, :], theta)[0]
        frame_of = cells.to_frame()
        for c, group in frame_of.groupby("cell"):
            r = layout.row[c]
            entries = np.arange(post.ptr[r], post.ptr[r + 1])
            x = np.zeros(len(entries))
            for target, count in zip(group["target"], group["count"], strict=True):
                x[post.tgt[entries] == post.states.get_loc(target)] = count
            exact = stats.dirichlet_multinomial.logpmf(x, alpha * p[entries], x.sum())
            multinomial = stats.multinomial.logpmf(x, x.sum(), p[entries])
            if alpha < 1e12:
                assert got[c] == pytest.approx(exact, rel=1e-9, abs=1e-9), (alpha, c)
            else:  # scipy's lgamma differences have lost ~3 digits here; ours have not
                assert got[c] == pytest.approx(multinomial, abs=1e-9)
                assert abs(exact - multinomial) > 1e-4


def test_pytensor_and_numpy_likelihoods_agree():
    cells = dm_cells({"s": 2.0, "t": 80.0}, 40, seed=3)
    model = OverdispersedTransitionModel(mode="calls")
    post = _Posterior.build(cells.to_counts(), model.prior, True)
    layout = _CellLayout.build(post, cells, True)
    pm_model = model._build(post, layout)
    point = pm_model.initial_point()
    point["log_concentration_z"] = np.array([-1.5, 2.5])
    outs = pm_model.replace_rvs_by_values(
        [pm_model.potentials[1], pm_model["p"], pm_model["concentration"]]
    )
    loglik, p, alpha = pytensor.function(pm_model.value_vars, outs)(
        *(point[v.name] for v in pm_model.value_vars)
    )
    lik = _Likelihood.build(layout)
    expected = layout.traces @ (lik.cells(np.log(p)[None], -np.log(alpha)[None])[0] - layout.coef)
    assert float(loglik) == pytest.approx(expected, rel=1e-10)


# ------------------------------------------------------------------- recovery
@SMALL_HIERARCHY
def test_recovers_per_source_concentrations():
    """Known α 0.5, 5 and 200 (ρ 0.67, 0.17, 0.005) from 150 traces per source.

    The 90% intervals of ρ cover the truth for every source, and the medians keep the
    order.
    """
    truth = {"a": 0.5, "b": 5.0, "c": 200.0}
    model = fit(dm_cells(truth, 150, seed=11), seed=1, mode="calls")
    table = model.concentration(ci_prob=0.9)
    for source, alpha in truth.items():
        rho = 1 / (1 + alpha)
        row = table.loc[source]
        assert row["rho_lower"] <= rho <= row["rho_upper"], (source, row.to_dict())
    assert (
        table.loc["a", "rho_median"] > table.loc["b", "rho_median"] > table.loc["c", "rho_median"]
    )
    assert (table["informative"] == 150).all()
    assert_converged(model, hyper_rhat=1.02)  # 3 sources: the population sd mixes slowly


# ------------------------------------------------------------ LOO comparison
@SMALL_HIERARCHY
def test_fixed_request_paths_make_the_dirichlet_multinomial_win():
    """Request types fix the hub's choices: ρ of the hub is large and DM wins LOO.

    Required: elpd(DM) - elpd(plain) > 4 standard errors of the difference; the hub's
    ρ is 0.11 (90%: 0.08-0.15) with this seed.
    """
    spans = hub_traces(400, seed=5, fixed=True)
    dm = fit(spans, seed=2)
    plain = TransitionModel().fit(count_trace_transitions(spans, "sequence"))
    plain.sample_posterior(1000, chains=2, random_seed=3)
    diff, se = loo_difference(dm, plain)
    assert diff > 4 * se > 0, (diff, se)
    assert dm.concentration().loc["frontend", "rho_lower"] > 0.05
    assert_converged(dm, hyper_rhat=1.02)  # 4-5 sources: the population sd mixes slowly


@SMALL_HIERARCHY
def test_markov_walks_tie_and_the_rows_agree_with_the_exact_model():
    """I.i.d. walks: no over-dispersion. The DM must not win LOO (difference below 2
    standard errors), the hub's ρ stays below 0.05 (90% upper bound) and the DM row
    means equal the exact Dirichlet means within 0.01 (the posterior sds are ~0.01-0.02).
    """
    spans = hub_traces(600, seed=6, fixed=False)
    cells = count_trace_transitions(spans, "sequence")
    dm = fit(cells, seed=4)
    plain = TransitionModel().fit(cells)
    diff, se = loo_difference(dm, plain)  # plain draws its own posterior (1000 x 2)
    assert diff < 2 * se, (diff, se)
    assert dm.concentration().loc["frontend", "rho_upper"] < 0.05
    assert_converged(dm, hyper_rhat=1.02)  # 4-5 sources: the population sd mixes slowly
    ours = dm.transition_probabilities()
    exact = plain.transition_probabilities()
    pd.testing.assert_frame_equal(
        ours[["source", "target", "count"]], exact[["source", "target", "count"]]
    )
    np.testing.assert_allclose(ours["mean"], exact["mean"], atol=0.01)
    np.testing.assert_allclose(ours.groupby("source")["mean"].sum(), 1.0, rtol=1e-9)


# ----------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def boutique_fit():
    spans = bayesperf.datasets.load_online_boutique()
    with warnings.catch_warnings():  # the tests check convergence themselves
        warnings.simplefilter("ignore", ConvergenceWarning)
        return spans, fit(spans, seed=7, mode="calls")


def test_online_boutique_converges_and_loo_prefers_the_plain_model(boutique_fit):
    """Calls mode on the bundled fault-free minute (the Nezha one in shared/data).

    Those calls are *under*-dispersed (e.g. every currencyservice span makes exactly
    one self-call then ends): the DM can only approach the multinomial (ρ < 0.01 for
    every source with informative traces) and LOO does not prefer it.
    """
    spans, model = boutique_fit
    assert_converged(model)
    conc = model.concentration()
    assert (conc.loc[conc["informative"] > 0, "rho_upper"] < 0.01).all()
    plain = TransitionModel(mode="calls").fit(spans)
    plain.compute_log_likelihood(spans, random_seed=0)
    diff, se = loo_difference(model, plain)
    assert diff < 2 * se  # DM not better; plain ties or wins
    np.testing.assert_allclose(
        model.transition_probabilities()["mean"],
        plain.transition_probabilities()["mean"],
        atol=0.01,
    )


def test_save_load_summary_and_repr(boutique_fit, tmp_path):
    _, model = boutique_fit
    loaded = bayesperf.load(model.save(tmp_path / "dm.nc"))
    assert isinstance(loaded, OverdispersedTransitionModel)
    assert loaded.get_config() == model.get_config()
    assert loaded.fit_cells.equals(model.fit_cells)
    pd.testing.assert_frame_equal(loaded.summary(), model.transition_probabilities())
    pd.testing.assert_frame_equal(loaded.concentration(), model.concentration())
    assert "11 sources" in repr(loaded) and "not fitted" in repr(OverdispersedTransitionModel())
    table = model.transition_probabilities(0.8, unseen=False)
    assert UNSEEN not in set(table["target"])
    assert (table["lower"] <= table["median"]).all() and (table["median"] <= table["upper"]).all()
    assert list(model.support)[-1] == "END" and model.states[0] == "START"
    assert model.fit_counts.equals(
        count_transitions(bayesperf.datasets.load_online_boutique(), "calls")
    )
    plain = model.as_plain().compute_log_likelihood(random_seed=0)
    assert plain.log_likelihood["transitions"].sizes["cell"] == len(model.fit_cells.cells)


@SMALL_HIERARCHY
@pytest.mark.shared_data
def test_hotel_reservation_fits_and_reports_the_loo_preference(shared_data):
    spans = bayesperf.read_traces(shared_data / "jaeger-hotel-reservation" / "hotel_load25.json")
    model = fit(spans, seed=8, mode="sequence")
    assert_converged(model)
    plain = model.as_plain()
    diff, se = loo_difference(model, plain)
    print(f"hotel-reservation sequence: elpd(DM) - elpd(plain) = {diff:.1f} (se {se:.1f})")
    assert math.isfinite(diff) and se >= 0


# ---------------------------------------------------------------------- scale
def test_three_thousand_services_stay_sparse():
    """3,000 services, ~10^5 edges from 3 x 10^4 (trace, source) cells: the model graph.

    Nothing is states x states (a float64 3,000^2 array alone is 72 MB): building the
    graph peaks under 100 MB of traced memory and every constant or variable of the log
    density has at most one element per edge or per cell entry.
    """
    rng = np.random.default_rng(0)
    n_services, n_traces = 3000, 10_000
    names = np.array([f"s{i:04d}" for i in range(n_services)], dtype=object)
    src = rng.integers(0, n_services, 4 * n_traces * 3)
    rows = pd.DataFrame(
        {
            "trace": np.repeat(np.arange(n_traces * 3), 4),
            "source": names[np.repeat(src[: n_traces * 3], 4)],
            "target": names[rng.integers(0, n_services, n_traces * 12)],
            "count": rng.integers(1, 4, n_traces * 12),
        }
    )
    cells = TraceTransitionCounts.from_frame(rows, "calls")
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        model = OverdispersedTransitionModel(mode="calls")
        post = _Posterior.build(cells.to_counts(), model.prior, True)
        layout = _CellLayout.build(post, cells, True)
        pm_model = model._build(post, layout)
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100e6 and elapsed < 30, (peak, elapsed)
    # Every constant and every free variable of the log density is at most edge-sized.
    graph = ancestors([pm_model.logp()])
    sizes = [c.data.size for c in graph if isinstance(c, pytensor.graph.basic.Constant)]
    point = pm_model.initial_point()
    sizes += [v.size for v in point.values()]
    assert len(post.a) < n_services**2 / 50
    assert max(sizes) <= max(len(post.a), len(layout.entry_edge))
    # The pointwise log-likelihood at that point: finite for every cell.
    lik = _Likelihood.build(layout)
    log_p = np.log(post.a / post.a0[post.entry_row])[None]
    assert np.isfinite(lik.cells(log_p, np.zeros((1, len(post.row_code))))).all()


# ---------------------------------------------------------------------- errors
def test_errors():
    spans = hub_traces(20, seed=1, fixed=True)
    with pytest.raises(NotFittedError):
        OverdispersedTransitionModel().concentration()
    with pytest.raises(ValueError, match="unknown transition mode"):
        OverdispersedTransitionModel(mode="dag")
    with pytest.raises(ValueError, match="unknown concentration prior field"):
        OverdispersedTransitionModel(concentration_prior={"tau": 1})
    with pytest.raises(ValueError, match="mu_sd must be a finite positive"):
        ConcentrationPrior(mu_sd=0)
    with pytest.raises(TypeError, match="concentration_prior"):
        OverdispersedTransitionModel(concentration_prior=3.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot show over-dispersion"):
        OverdispersedTransitionModel().fit(count_transitions(spans))
    with pytest.raises(ValueError, match="mode='calls'"):
        OverdispersedTransitionModel().fit(dm_cells({"s": 1.0}, 5, seed=0))
    with pytest.raises(ValueError, match="no transitions"):
        OverdispersedTransitionModel().fit(TraceTransitionCounts.empty())
    plain = TransitionModel().fit(spans)
    with pytest.raises(ValueError, match="needs per-trace counts"):
        plain.compute_log_likelihood()
    other = hub_traces(20, seed=2, fixed=True)
    with pytest.raises(ValueError, match="not the transitions the model was fit on"):
        plain.compute_log_likelihood(other)


def test_plain_model_log_likelihood_is_the_multinomial_of_each_cell():
    spans = hub_traces(50, seed=3, fixed=False)
    cells = count_trace_transitions(spans, "sequence")
    model = TransitionModel().fit(cells)
    assert model.transition_probabilities().equals(
        TransitionModel().fit(spans).transition_probabilities()
    )
    model.compute_log_likelihood(draws=20, chains=2, random_seed=0)
    ll = model.idata.log_likelihood["transitions"]
    assert ll.dims == ("chain", "draw", "cell") and ll.shape == (2, 20, cells.n_cells)
    observed = model.idata.observed_data
    assert observed["transitions"].to_numpy().tolist() == cells.cells["traces"].tolist()
    p = model.idata.posterior["p"].isel(chain=1, draw=7)
    edges = dict(zip(p["edge"].to_numpy().tolist(), p.to_numpy(), strict=True))
    frame = cells.to_frame()
    for c in (0, cells.n_cells // 2, cells.n_cells - 1):
        group = frame[frame["cell"] == c]
        source = group["source"].iloc[0]
        x = group["count"].to_numpy()
        probs = np.array([edges[f"{source} -> {t}"] for t in group["target"]])
        rest = 1 - probs.sum()
        exact = stats.multinomial.logpmf(np.append(x, 0), x.sum(), np.append(probs, rest))
        assert float(ll.isel(chain=1, draw=7, cell=c)) == pytest.approx(exact, rel=1e-10)
    # Stored cells make the data argument optional; save/load keeps them.
    again = TransitionModel().fit(cells).compute_log_likelihood(spans, draws=20, random_seed=0)
    xr.testing.assert_allclose(again.log_likelihood["transitions"], ll)
