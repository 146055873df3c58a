"""LatencyModel, hierarchical lognormal family: API, errors, persistence (fast), recovery and
real data (slow). The default (nonparametric) family is tested in test_nonparametric.py."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayesperf
from bayesperf.diagnostics import diagnose, loo
from bayesperf.models import ConvergenceWarning, LatencyModel, LatencyPriors, load
from bayesperf.simulate import Call, CallGraph, LogNormal, random_call_graph, simulate_traces
from bayesperf.summaries import LatencySummary, summarize_latency

FAST = {"draws": 300, "tune": 300, "progressbar": False}
# Short chains may miss the ESS >= 400 bar; the fast tests check the API, not convergence.
quiet = pytest.mark.filterwarnings("ignore::bayesperf.models.ConvergenceWarning")


def small_graph() -> CallGraph:
    return CallGraph(
        root="front",
        root_latency=LogNormal(40.0, 0.5),
        calls={
            "front": [
                Call("cart", 1.0, LogNormal(2.0, 0.3)),
                Call("pay", 0.02, LogNormal(30.0, 0.4)),
            ],
            "cart": [],
            "pay": [],
        },
    )


@pytest.fixture(scope="module")
def spans():
    return simulate_traces(small_graph(), 400, random_seed=3).spans


@pytest.fixture(scope="module")
def fitted(spans):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LatencyModel("lognormal").fit(spans, random_seed=7, **FAST)


def test_results_have_named_dims_and_group_labels(fitted):
    q = fitted.quantiles((0.5, 0.99))
    assert q.dims == ("chain", "draw", "pair", "quantile")
    assert set(q["callee"].values) == {"front", "cart", "pay"}
    assert (q.sel(quantile=0.99) > q.sel(quantile=0.5)).all()
    assert isinstance(fitted.idata, xr.DataTree)
    assert "location_raw" not in fitted.idata.posterior  # reparameterisation is internal


def test_summary_columns_and_overall_row(fitted, spans):
    table = fitted.summary(ci_prob=0.9)
    for stat in ("mean", "p50", "p95", "p99"):
        for part in ("mean", "median", "lower", "upper"):
            assert f"{stat}_{part}" in table.columns
    assert {"n", "empirical_p50", "empirical_p95", "empirical_p99"} <= set(table.columns)
    assert table.loc[("(all)", "(all)"), "n"] == len(spans)
    rows = table.drop(index=("(all)", "(all)"))
    assert rows["n"].sum() == len(spans)
    assert (rows["p99_lower"] <= rows["p99_median"]).all()
    assert (rows["p99_median"] <= rows["p99_upper"]).all()
    # The root pair has no caller: spelled "(none)".
    assert ("(none)", "front") in table.index
    # The overall P50 lies between the groups' P50s.
    assert rows["p50_median"].min() <= table.loc[("(all)", "(all)"), "p50_median"]
    assert table.loc[("(all)", "(all)"), "p50_median"] <= rows["p50_median"].max()


def test_wider_interval_for_the_rare_pair(fitted):
    table = fitted.summary(overall=False)
    width = (table["p99_upper"] - table["p99_lower"]) / table["p99_median"]
    assert width[("front", "pay")] > width[("front", "cart")]


def test_prob_exceeds(fitted):
    p = fitted.prob_exceeds(1e6, q=0.99)
    assert (p == 0).all()
    p = fitted.prob_exceeds(1e-6, q=0.5)
    assert (p == 1).all()
    assert p.index.equals(fitted.groups)


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_save_load_round_trip_is_exact(fitted, tmp_path, suffix):
    path = fitted.save(tmp_path / f"model{suffix}")
    back = load(path)
    assert isinstance(back, LatencyModel)
    assert back.get_config() == fitted.get_config()
    pd.testing.assert_frame_equal(back.summary(), fitted.summary())
    assert back.fit_summary.equals(fitted.fit_summary)


def test_not_fitted_errors():
    model = LatencyModel()
    with pytest.raises(bayesperf.NotFittedError, match="fit"):
        model.summary()
    with pytest.raises(bayesperf.NotFittedError):
        model.quantiles()


def test_bad_configuration():
    with pytest.raises(ValueError, match="unknown latency family 'pareto'"):
        LatencyModel(family="pareto")
    with pytest.raises(ValueError, match="unknown pooling"):
        LatencyModel("lognormal", pooling="some")
    with pytest.raises(ValueError, match=r"unknown prior\(s\) \['tau'\]"):
        LatencyModel("lognormal", priors={"tau": 1.0})
    assert (
        LatencyPriors.from_dict(LatencyPriors(shape_sd_scale=0.5).to_dict()).shape_sd_scale == 0.5
    )


def test_bad_data():
    with pytest.raises(ValueError, match="no groups"):
        LatencyModel("lognormal").fit(LatencySummary.empty())
    hist = LatencySummary.from_histogram(
        [0, 5, 10, np.inf], [[3, 2, 1], [0, 0, 0]], groups=["a", "b"], by="service"
    )
    with pytest.raises(ValueError, match=r"groups without spans.*'b'"):
        LatencyModel("lognormal", by="service").fit(hist)
    with pytest.raises(ValueError, match="negative"):
        LatencyModel("lognormal").fit(
            pd.DataFrame({"caller": ["a"], "callee": ["b"], "latency": [-1.0]})
        )


@quiet
def test_single_span_group_and_zero_durations():
    """Zeros are left-censored below 1 µs: a lognormal with median 2 µs whose spans under
    1 µs were recorded as 0 (25% of them) is recovered; a single-span pair gets a finite,
    wide interval borrowed from the population."""
    rng = np.random.default_rng(0)
    lat = np.exp(rng.normal(np.log(0.002), 1.0, 2000))
    lat[lat < 1e-3] = 0.0  # what a tracer with 1 µs resolution records
    assert 0.2 < (lat == 0).mean() < 0.3
    spans = pd.DataFrame(
        {"caller": ["a"] * 2001, "callee": ["b"] * 2000 + ["c"], "latency": np.append(lat, 3.0)}
    )
    model = LatencyModel("lognormal").fit(spans, random_seed=1, **FAST)
    table = model.summary(overall=False)
    quantile_columns = [c for c in table.columns if c.startswith("p")]
    assert np.isfinite(table[quantile_columns].to_numpy(dtype=float)).all()
    assert table.loc[("a", "b"), "p50_lower"] < 0.002 < table.loc[("a", "b"), "p50_upper"]
    p99 = np.exp(np.log(0.002) + 2.3263)
    assert table.loc[("a", "b"), "p99_lower"] < p99 < table.loc[("a", "b"), "p99_upper"]
    width = table.loc[("a", "c"), "p99_upper"] / table.loc[("a", "c"), "p99_lower"]
    assert width > 2


@quiet
@pytest.mark.parametrize("family", ["gamma", "weibull"])
def test_binned_families_recover_from_histogram_buckets(family):
    """Prometheus-style cumulative buckets of known gamma / Weibull samples: the 90%
    interval of each service's P50 and P95 covers the truth (fixed seed)."""
    from scipy import stats

    truths = {
        "gamma": {"api": stats.gamma(2.0, scale=2.0), "db": stats.gamma(4.0, scale=3.0)},
        "weibull": {
            "api": stats.weibull_min(1.5, scale=4.0),
            "db": stats.weibull_min(2.5, scale=12.0),
        },
    }[family]
    edges = [0, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, np.inf]
    counts = [np.histogram(t.rvs(2000, random_state=4), edges)[0] for t in truths.values()]
    cumulative = np.cumsum(counts, axis=1)
    hist = LatencySummary.from_histogram(
        edges, cumulative, groups=list(truths), by="service", cumulative=True
    )
    model = LatencyModel(family=family, by="service").fit(hist, random_seed=2, **FAST)
    table = model.summary(overall=False)
    for service, truth in truths.items():
        for stat, q in (("p50", 0.5), ("p95", 0.95)):
            lower, upper = table.loc[service, f"{stat}_lower"], table.loc[service, f"{stat}_upper"]
            assert lower <= truth.ppf(q) <= upper, (service, stat)


@quiet
@pytest.mark.parametrize("pooling", ["none", "complete"])
def test_other_poolings(spans, pooling):
    model = LatencyModel("lognormal", pooling=pooling).fit(spans, random_seed=1, **FAST)
    p50 = model.summary(overall=False)["p50_median"]
    if pooling == "complete":
        assert np.allclose(p50, p50.iloc[0])
    else:
        assert p50[("front", "cart")] < p50[("front", "pay")]


def test_diagnose_and_loo(fitted):
    table = diagnose(fitted)
    assert {"r_hat_max", "ess_bulk_min", "ess_tail_min", "divergences", "ok"} <= set(table.columns)
    assert {"location", "shape", "location_sd"} <= set(table.index)
    assert (table["r_hat_max"] < 1.05).all()
    result = loo(fitted)
    assert result.n_spans == fitted.fit_summary.count.sum()
    assert np.isfinite(result.elpd) and result.se > 0
    # Log-likelihood cells are stored for ArviZ.
    assert fitted.idata.log_likelihood["latency"].dims == ("chain", "draw", "cell")


def test_posterior_predictive_histograms(fitted):
    fitted.sample_posterior_predictive(random_seed=1, draws=50)
    pp = fitted.idata.posterior_predictive
    obs = fitted.idata.observed_data
    groups = obs["cell_group"].to_numpy()
    n = fitted.fit_summary.count
    cells = pp["latency"].to_numpy().reshape(-1, pp.sizes["cell"])
    elsewhere = pp["elsewhere"].to_numpy().reshape(-1, len(n))
    for g in range(len(n)):
        # Every replicated span lands in an observed cell or elsewhere: nothing renormalised.
        assert (cells[:, groups == g].sum(axis=1) + elsewhere[:, g] == n[g]).all()
    # LOO after a PPC (and a PPC after LOO) share one observed_data group.
    assert np.isfinite(loo(fitted).elpd)
    fitted.sample_posterior_predictive(random_seed=2, draws=20)
    assert np.isfinite(loo(fitted).elpd)


# ---------------------------------------------------------------- slow: recovery, real data


@pytest.mark.slow
def test_p99_intervals_cover_the_truth_at_the_nominal_rate():
    """Over 187 pairs (1 to ~10^4 spans each) the 90% intervals of P99 cover the truth
    in 85-95% of pairs (binomial sd 2.2 points at 187 pairs; measured: 88.8%)."""
    graph = random_call_graph(120, random_seed=11, rare_pairs=40, families=("lognormal",))
    sim = simulate_traces(graph, 4000, random_seed=12)
    model = LatencyModel("lognormal").fit(sim.spans, random_seed=13, progressbar=False)
    table = model.summary(ci_prob=0.9, overall=False)
    truth = sim.truth.latency
    truth.index = pd.MultiIndex.from_tuples(
        [("(none)" if c == "START" else c, e) for c, e in truth.index], names=["caller", "callee"]
    )
    truth = truth[truth["count"] > 0]
    joined = table.join(truth[["p99"]], how="inner")
    assert len(joined) == len(truth) >= 150
    covered = (joined["p99_lower"] <= joined["p99"]) & (joined["p99"] <= joined["p99_upper"])
    assert 0.85 <= covered.mean() <= 0.95, covered.mean()
    assert joined["n"].min() <= 3 and joined["n"].max() >= 5000
    ok = diagnose(model)
    assert ok["ok"].all(), ok


@pytest.mark.slow
def test_sparse_and_huge_pairs_in_one_model_converge():
    """Pairs with 3 spans and with 10^5 spans: R-hat <= 1.01, ESS >= 400, no divergences."""
    rng = np.random.default_rng(5)
    sizes = [3, 3, 5, 20, 200, 5_000, 100_000, 100_000]
    frames = []
    for i, n in enumerate(sizes):
        frames.append(
            pd.DataFrame(
                {
                    "caller": "gw",
                    "callee": f"s{i}",
                    "latency": np.exp(rng.normal(np.log(5 + 3 * i), 0.4 + 0.1 * i, n)),
                }
            )
        )
    spans = pd.concat(frames, ignore_index=True)
    model = LatencyModel("lognormal").fit(spans, random_seed=6, progressbar=False)
    table = diagnose(model)
    assert table["ok"].all(), table
    # The data-rich pairs are pinned by their data.
    p50 = model.summary(overall=False)["p50_median"]
    assert abs(p50[("gw", "s6")] / (5 + 18) - 1) < 0.01


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_traces_converge_and_hotel_load_raises_p99(shared_data):
    ob = bayesperf.read_traces(shared_data / "nezha-onlineboutique" / "fault_free")
    model = LatencyModel("lognormal").fit(ob, random_seed=1, progressbar=False)
    assert diagnose(model)["ok"].all()

    tables, emp = {}, {}
    for load_ in (25, 100):
        spans = bayesperf.read_traces(
            shared_data / "jaeger-hotel-reservation" / f"hotel_load{load_}.json"
        )
        fit = LatencyModel("lognormal").fit(spans, random_seed=2, progressbar=False)
        assert diagnose(fit)["ok"].all(), load_
        tables[load_] = fit.summary(overall=False)
        emp[load_] = summarize_latency(spans).to_frame()["p99"]
    moved = emp[100] > 1.5 * emp[25]  # pairs whose empirical tail clearly moved up
    assert moved.any()
    for pair in moved[moved].index:
        key = tuple("(none)" if pd.isna(k) else k for k in pair)
        assert tables[100].loc[key, "p99_median"] > tables[25].loc[key, "p99_median"], key


@quiet
def test_ppc_flags_a_bimodal_pair_and_not_lognormal_ones():
    """Two lognormal pairs fit (p > 0.05); a 70/30 fast/slow pair's P99 does not
    (p < 0.01), since one lognormal cannot reproduce a separate slow mode."""
    rng = np.random.default_rng(8)
    fast = np.exp(rng.normal(np.log(1.0), 0.3, 3000))
    slow = np.exp(rng.normal(np.log(200.0), 0.1, 3000))
    bimodal = np.where(rng.random(3000) < 0.7, fast, slow)
    spans = pd.DataFrame(
        {
            "caller": "gw",
            "callee": ["a"] * 3000 + ["b"] * 3000 + ["c"] * 3000,
            "latency": np.concatenate(
                [np.exp(rng.normal(1.0, 0.5, 3000)), np.exp(rng.normal(3.0, 0.8, 3000)), bimodal]
            ),
        }
    )
    model = LatencyModel("lognormal").fit(spans, random_seed=4, **FAST)
    p = model.ppc_pvalue(0.99)
    assert p[("gw", "a")] > 0.05 and p[("gw", "b")] > 0.05
    assert p[("gw", "c")] < 0.01
    assert "p99_ppc_p" in model.summary().columns


@pytest.mark.parametrize("censored", [False, True], ids=["observed", "with-zeros"])
def test_collapsed_sampler_matches_the_exact_posterior_on_a_grid(censored):
    """One group of 8 spans, fixed priors: posterior mean and sd of location and
    log-shape from MCMC (locations drawn after sampling, or sampled for a group with
    spans below 1 µs) agree with 2-d quadrature. Tolerance: 0.1 posterior sd on means
    (MC standard error ~0.02 sd at 4,000 draws), 10% on sds."""
    from scipy import stats

    rng = np.random.default_rng(21)
    latency = np.exp(rng.normal(np.log(0.002 if censored else 20.0), 1.0, 8))
    if censored:
        latency[latency < 1e-3] = 0.0  # a tracer with 1 µs resolution records 0
        assert 2 <= (latency == 0).sum() <= 5
    priors = {
        "location_mu_mean": float(np.log(np.median(latency[latency > 0]))),
        "location_mu_sd": 2.0,
        "shape_mu_mean": 0.0,
        "shape_mu_sd": 1.0,
    }
    spans = pd.DataFrame({"caller": "a", "callee": "b", "latency": latency})
    model = LatencyModel("lognormal", pooling="none", priors=priors).fit(
        spans, random_seed=3, progressbar=False
    )
    assert diagnose(model)["ok"].all()

    log_y = np.log(latency[latency > 0])
    loc = np.linspace(priors["location_mu_mean"] - 8, priors["location_mu_mean"] + 8, 1201)
    shape = np.linspace(-4.0, 2.5, 1201)
    mu, s = np.meshgrid(loc, shape, indexing="ij")
    sigma = np.exp(s)
    logp = (
        stats.norm.logpdf(mu, priors["location_mu_mean"], 2.0)
        + stats.norm.logpdf(s, 0.0, 1.0)
        + stats.norm.logpdf(log_y[:, None, None], mu, sigma).sum(axis=0)
        + (latency == 0).sum() * stats.norm.logcdf((np.log(1e-3) - mu) / sigma)
    )
    weight = np.exp(logp - logp.max())
    weight /= weight.sum()
    post = model.idata.posterior
    for name, grid in (("location", mu), ("shape", s)):
        exact_mean = (weight * grid).sum()
        exact_sd = np.sqrt((weight * (grid - exact_mean) ** 2).sum())
        draws = post[name].to_numpy().ravel()
        assert abs(draws.mean() - exact_mean) < 0.1 * exact_sd, name
        assert draws.std() == pytest.approx(exact_sd, rel=0.1), name


def test_sampling_paths_are_seeded_and_pymc_is_reachable(spans):
    """nutpie runs directly by default, reproducibly for a seed; arguments only
    pm.sample understands (here its own NUTS) go through pm.sample."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a, b = (LatencyModel("lognormal").fit(spans, random_seed=5, **FAST) for _ in range(2))
        c = LatencyModel("lognormal").fit(spans, random_seed=6, **FAST)
        # Equal draws (attrs hold timestamps and timings).
        xr.testing.assert_equal(a.idata.posterior.to_dataset(), b.idata.posterior.to_dataset())
        assert not np.array_equal(a.idata.posterior["location"], c.idata.posterior["location"])
        pymc_nuts = LatencyModel("lognormal").fit(
            spans,
            random_seed=5,
            nuts_sampler="pymc",
            draws=100,
            tune=100,
            chains=2,
            progressbar=False,
        )
    assert pymc_nuts.idata.posterior.sizes["draw"] == 100
    assert set(pymc_nuts.idata.posterior.data_vars) == set(a.idata.posterior.data_vars)
