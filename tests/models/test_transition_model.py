"""TransitionModel: exact conjugate posterior, paths, visits, persistence, scale.

Tolerances: exact quantities (Beta marginals, posterior means) to 1e-12 relative; Monte
Carlo quantities within 4 Monte Carlo standard errors (computed in the test from the
exact variance), so a fixed seed passes with a wide margin and a wrong formula fails.
"""

import itertools
import math
import time
import tracemalloc

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import special, stats

import bayesperf
from bayesperf.errors import NotFittedError
from bayesperf.models.transitions import UNSEEN, TransitionModel, TransitionPrior
from bayesperf.simulate import random_call_graph, simulate_traces
from bayesperf.summaries.transitions import TransitionCounts


def counts(edges: dict[tuple[str, str], int], mode: str = "sequence") -> TransitionCounts:
    frame = pd.DataFrame(
        [(s, t, c) for (s, t), c in edges.items()], columns=["source", "target", "count"]
    )
    return TransitionCounts.from_frame(frame, mode)


SMALL = {
    ("START", "a"): 10,
    ("a", "b"): 7,
    ("a", "END"): 3,
    ("b", "a"): 2,
    ("b", "END"): 5,
}


def row_sums(table: pd.DataFrame) -> pd.Series:
    return table.groupby("source")["mean"].sum()


def synthetic_counts(
    n_services: int = 3000, n_transitions: int = 10**6, fanout: int = 30, seed: int = 0
) -> TransitionCounts:
    """~10^5 sparse edges: each service calls ~30 random others, 10% of its mass ends."""
    rng = np.random.default_rng(seed)
    names = np.array([f"s{i:04d}" for i in range(n_services)], dtype=object)
    k = 1 + rng.poisson(fanout, n_services)
    src = np.repeat(np.arange(n_services), k)
    tgt = np.concatenate([rng.choice(n_services, size=kk, replace=False) for kk in k])
    w = rng.lognormal(0, 1, len(src))
    w *= 0.9 / np.bincount(src, weights=w)[src]
    roots = rng.choice(n_services, 10, replace=False)
    frame = pd.DataFrame(
        {
            "source": np.concatenate([np.full(10, "START", dtype=object), names[src], names]),
            "target": np.concatenate(
                [names[roots], names[tgt], np.full(n_services, "END", dtype=object)]
            ),
            "count": 0,
        }
    )
    weight = np.concatenate([np.full(10, 0.1), w, np.full(n_services, 0.1)])
    frame["count"] = rng.multinomial(n_transitions, weight / weight.sum())
    return TransitionCounts.from_frame(frame, "sequence")


@pytest.fixture(scope="module")
def boutique():
    return bayesperf.datasets.load_online_boutique()


# ---------------------------------------------------------------------- exactness
@pytest.mark.parametrize(
    "prior", [TransitionPrior(), TransitionPrior(alpha=0.5, per="target"), 2.0]
)
def test_means_and_intervals_are_the_exact_beta_marginals(prior):
    model = TransitionModel(prior=prior).fit(counts(SMALL))
    table = model.transition_probabilities(ci_prob=0.8)
    p = TransitionPrior.coerce(prior)
    support = ["a", "b", "END"]  # every state seen as a target, plus END
    assert list(model.support) == support
    w = p.alpha / len(support) if p.per == "row" else p.alpha
    for source in ("START", "a", "b"):
        n = {t: c for (s, t), c in SMALL.items() if s == source}
        a0 = sum(n.values()) + w * len(support)
        rows = table[table["source"] == source].set_index("target")
        expected = {t: w + c for t, c in n.items()}
        unseen = [t for t in support if t not in n]
        if unseen:
            expected[UNSEEN] = w * len(unseen)
        assert list(rows.index) == [t for t in [*support, UNSEEN] if t in expected]
        for target, a in expected.items():
            beta = stats.beta(a, a0 - a)
            row = rows.loc[target]
            assert row["count"] == n.get(target, 0)
            np.testing.assert_allclose(row["mean"], beta.mean(), rtol=1e-12)
            np.testing.assert_allclose(row["median"], beta.median(), rtol=1e-10)
            np.testing.assert_allclose(row["lower"], beta.ppf(0.1), rtol=1e-10)
            np.testing.assert_allclose(row["upper"], beta.ppf(0.9), rtol=1e-10)
    np.testing.assert_allclose(row_sums(table), 1.0, rtol=1e-12)


def test_per_row_prior_bounds_the_unseen_mass_on_large_graphs():
    edges = {("START", "s0"): 5, **{("s0", f"s{i}"): 1 for i in range(1, 1000)}}
    edges |= {(f"s{i}", "END"): 1 for i in range(1, 1000)}
    row = TransitionModel().fit(counts(edges)).transition_probabilities()
    start_unseen = row.query("source == 'START' and target == @UNSEEN")["mean"].item()
    assert start_unseen == pytest.approx(1 / 6 * 1000 / 1001)  # alpha/(n+alpha) * unseen share
    flat = TransitionModel(prior={"alpha": 1.0, "per": "target"}).fit(counts(edges))
    table = flat.transition_probabilities()
    assert table.query("source == 'START' and target == @UNSEEN")["mean"].item() > 0.99


def test_row_means_sum_to_one_and_start_end_behave_on_online_boutique(boutique):
    for mode in ("sequence", "calls"):
        model = TransitionModel(mode=mode).fit(boutique)
        table = model.transition_probabilities()
        np.testing.assert_allclose(row_sums(table), 1.0, rtol=1e-12)
        assert "START" not in set(table["target"])
        assert "END" not in set(table["source"])
        observed = model.transition_probabilities(unseen=False)
        assert UNSEEN not in set(observed["target"])
        pd.testing.assert_frame_equal(
            observed, table[table["target"] != UNSEEN].reset_index(drop=True)
        )
        assert table["count"].sum() == bayesperf.count_transitions(boutique, mode).total
        assert (table["lower"] <= table["median"]).all()
        assert (table["median"] <= table["upper"]).all()
        matrix = model.transition_matrix()
        assert matrix.dims == ("source", "target")
        sums = matrix.sum("target")
        np.testing.assert_allclose(sums.drop_sel(source="END"), 1.0, rtol=1e-12)
        assert float(sums.sel(source="END")) == 0.0
        assert float(matrix.sel(target="START").sum()) == 0.0
        # The dict-of-dicts form of the seed notebook.
        probs = {
            s: dict(zip(g["target"], g["mean"], strict=True)) for s, g in table.groupby("source")
        }
        assert math.isclose(sum(probs["frontend"].values()), 1.0)


@pytest.mark.shared_data
def test_row_means_sum_to_one_on_real_traces(shared_data):
    files = sorted((shared_data / "zipkin").glob("*.json"))
    files.append(shared_data / "jaeger-hotel-reservation" / "hotel_load25.json")
    fitted = 0
    for path in files:
        spans = bayesperf.read_traces(path)
        for mode in ("sequence", "calls"):
            data = bayesperf.count_transitions(spans, mode)
            if data.total == 0:  # envoy.json holds no complete spans
                with pytest.raises(ValueError, match="no transitions"):
                    TransitionModel(mode=mode).fit(data)
                continue
            model = TransitionModel(mode=mode).fit(data)
            table = model.transition_probabilities()
            np.testing.assert_allclose(row_sums(table), 1.0, rtol=1e-12, err_msg=str(path))
            assert "START" not in set(table["target"]) and "END" not in set(table["source"])
            assert table["count"].sum() == data.total
            paths = model.sample_paths(n=20, random_seed=0)
            assert all(p[0] == "START" for p in paths)
            fitted += 1
    assert fitted >= 20


def test_include_end_false_drops_end_and_renormalises():
    model = TransitionModel(include_end=False).fit(counts(SMALL))
    table = model.transition_probabilities()
    assert "END" not in set(table["target"]) and "END" not in list(model.states)
    np.testing.assert_allclose(row_sums(table), 1.0, rtol=1e-12)
    # Row a keeps only a -> b (7) over the support {a, b}: Beta(7 + 1/2, 1/2).
    ab = table.query("source == 'a' and target == 'b'").iloc[0]
    assert ab["mean"] == pytest.approx(7.5 / 8)
    assert "include_end=False" in repr(model)
    with pytest.raises(ValueError, match="include_end=False"):
        model.sample_paths("END")


def test_recovery_of_calls_transition_probabilities():
    """90% intervals cover the exact calls-mode probabilities at about the nominal rate.

    Over the interior truths (0 < p < 1) of observed transitions of 5 random graphs
    (~420 edges) the coverage is 0.945 with these seeds; the bound 0.85-0.99 allows
    for the within-row correlation of the edges. (Calls of one span are independent
    Bernoulli draws, not multinomial ones: for this simulator that makes the intervals
    slightly conservative.) Truths of exactly 1 (leaves always end) lie on the edge of
    the support and get posterior means > 0.99 instead.
    """
    hits = []
    for seed in range(5):
        graph = random_call_graph(40, random_seed=seed, n_traces=2000)
        spans, truth = simulate_traces(graph, 2000, random_seed=seed + 100)
        table = TransitionModel(mode="calls").fit(spans).transition_probabilities(0.9)
        merged = truth.transitions.merge(table, on=["source", "target"], suffixes=("_truth", ""))
        p = merged["calls_probability"]
        interior = (p > 0) & (p < 1)
        hits.append(((merged["lower"] <= p) & (p <= merged["upper"]))[interior].to_numpy())
        assert (merged.loc[p == 1, "mean"] > 0.99).all()
    hits = np.concatenate(hits)
    assert len(hits) > 400
    assert 0.85 <= hits.mean() <= 0.99


# -------------------------------------------------------------------------- paths
def test_sample_paths_start_end_and_are_reproducible():
    model = TransitionModel().fit(counts(SMALL))
    paths = model.sample_paths("START", n=500, max_steps=4, random_seed=3)
    assert len(paths) == 500
    for path in paths:
        assert path[0] == "START"
        assert path[-1] in ("END", UNSEEN) or len(path) == 5  # max_steps transitions
        assert "START" not in path[1:] and "END" not in path[:-1]
    assert any(len(p) == 5 and p[-1] not in ("END", UNSEEN) for p in paths)
    assert paths == model.sample_paths("START", n=500, max_steps=4, random_seed=3)
    assert paths != model.sample_paths("START", n=500, max_steps=4, random_seed=4)
    frame = model.sample_paths("a", n=30, random_seed=3, as_frame=True)
    assert list(frame.columns) == ["path", "step", "state"]
    assert (frame.loc[frame["step"] == 0, "state"] == "a").all()
    assert frame["path"].nunique() == 30
    assert model.sample_paths("END", n=2) == [["END"], ["END"]]


def test_sample_paths_draw_one_transition_matrix_per_path():
    """Self-loop counts a->a 2, a->END 2: loops per path are Beta-geometric, exactly.

    A walk on the posterior mean would give a geometric law; drawing p per path gives
    P(L = k) = B(α + k, β + 1) / B(α, β) with α = 2 + w, β = 2 + w (w = 1/2).
    """
    model = TransitionModel().fit(counts({("START", "a"): 4, ("a", "a"): 2, ("a", "END"): 2}))
    n = 40_000
    paths = model.sample_paths("a", n=n, max_steps=500, random_seed=11)
    loops = np.array([len(p) - 2 for p in paths])
    assert all(p[-1] == "END" for p in paths)
    alpha = beta = 2.5
    for k in range(6):
        exact = math.exp(special.betaln(alpha + k, beta + 1) - special.betaln(alpha, beta))
        se = math.sqrt(exact * (1 - exact) / n)
        assert abs(np.mean(loops == k) - exact) < 4 * se, k
    # P(L >= 5) = E[p^5]: 0.093, where a walk on the posterior mean gives 0.5^5 = 0.031.
    tail = math.exp(special.betaln(alpha + 5, beta) - special.betaln(alpha, beta))
    se = math.sqrt(tail * (1 - tail) / n)
    assert abs(np.mean(loops >= 5) - tail) < 4 * se
    assert np.mean(loops >= 5) > 2 * 0.5**5


def test_path_probability_of_a_deterministic_chain_is_about_one():
    chain = counts({("START", "a"): 1000, ("a", "b"): 1000, ("b", "END"): 1000})
    model = TransitionModel().fit(chain)
    result = model.path_probability(["START", "a", "b", "END"], random_seed=0)
    assert list(result.index) == ["mean", "median", "lower", "upper"]
    assert result["lower"] > 0.99 and result["mean"] > 0.995
    assert result["lower"] <= result["median"] <= result["upper"] <= 1
    # Impossible paths have probability 0: into START, out of END.
    assert model.path_probability(["a", "START"])["upper"] == 0.0
    assert model.path_probability(["END", "a"])["mean"] == 0.0


def test_path_probability_mean_is_exact_and_interval_is_monte_carlo():
    model = TransitionModel().fit(counts(SMALL))
    path = ["a", "b", "a", "b", "END"]  # uses row a twice: not a product of means
    w = 1 / 3
    a_ab, a0_a = 7 + w, 10 + 1.0
    a_ba, a_bend, a0_b = 2 + w, 5 + w, 7 + 1.0
    # E[p_ab^2] E[p_ba p_bEND] by the Dirichlet moment formula.
    exact = (a_ab * (a_ab + 1)) / (a0_a * (a0_a + 1)) * (a_ba * a_bend) / (a0_b * (a0_b + 1))
    result = model.path_probability(path, ci_prob=0.9, draws=20_000, random_seed=5)
    assert result["mean"] == pytest.approx(exact, rel=1e-12)
    # The interval by direct simulation of the two independent rows.
    rng = np.random.default_rng(0)
    pa = rng.dirichlet([a_ab, a0_a - a_ab], 200_000)[:, 0]
    pb = rng.dirichlet([a_ba, a_bend, a0_b - a_ba - a_bend], 200_000)
    direct = pa**2 * pb[:, 0] * pb[:, 1]
    lo, hi = np.quantile(direct, [0.05, 0.95])
    assert result["lower"] == pytest.approx(lo, rel=0.05)
    assert result["upper"] == pytest.approx(hi, rel=0.05)
    # A target in the support never observed from the row gets its prior share.
    unseen = model.path_probability(["START", "b"])  # START only went to a
    assert unseen["mean"] == pytest.approx(w / (10 + 1.0))
    bucket = model.path_probability(["START", UNSEEN])
    assert bucket["mean"] == pytest.approx(2 * w / (10 + 1.0))
    assert model.path_probability(["a", "b"], random_seed=1).equals(
        model.path_probability(["a", "b"], random_seed=1)
    )


def test_most_likely_paths_best_first():
    model = TransitionModel().fit(counts(SMALL))
    best = model.most_likely_paths("START", k=3)
    assert list(best.columns) == ["path", "probability", "steps"]
    # START a b END: (31/33)(22/33)(16/24) = 0.417 beats START a END: (31/33)(10/33).
    assert best["path"].iloc[0] == ["START", "a", "b", "END"]
    assert best["path"].iloc[1] == ["START", "a", "END"]
    assert best["probability"].is_monotonic_decreasing
    table = model.transition_probabilities().set_index(["source", "target"])["mean"]
    for path, prob in zip(best["path"], best["probability"], strict=True):
        assert prob == pytest.approx(math.prod(table[s, t] for s, t in itertools.pairwise(path)))
        assert path[-1] == "END"
    assert len(model.most_likely_paths("START", k=10, max_steps=3)) == 2


def test_expected_visits_match_the_analytic_value():
    """From a with a->a 30, a->END 10: visits to a are 1/(1 - p_aa), p_aa ~ Beta(α, β).

    E[1/X] = (s - 1)/(α' - 1) for X = 1 - p_aa ~ Beta(α', α) with α' = β, s = α + β.
    """
    model = TransitionModel().fit(counts({("START", "a"): 40, ("a", "a"): 30, ("a", "END"): 10}))
    draws = 4000
    visits = model.expected_visits("a", ci_prob=0.9, draws=draws, random_seed=2)
    alpha, beta = 30.5, 10.5  # w = 1/2 on each of {a, END}
    s = alpha + beta
    mean = (s - 1) / (beta - 1)
    second = (s - 1) * (s - 2) / ((beta - 1) * (beta - 2))
    se = math.sqrt((second - mean**2) / draws)
    assert list(visits.index) == ["a", "END"]
    assert abs(visits.loc["a", "mean"] - mean) < 4 * se
    np.testing.assert_allclose(visits.loc["END"], 1.0)  # no unseen targets: always ends
    x = stats.beta(beta, alpha)  # 1 / visits
    assert visits.loc["a", "upper"] == pytest.approx(1 / x.ppf(0.05), rel=0.03)
    assert visits.loc["a", "lower"] == pytest.approx(1 / x.ppf(0.95), rel=0.03)


def test_expected_visits_on_online_boutique_absorb_with_probability_one(boutique):
    model = TransitionModel(mode="calls").fit(boutique)
    visits = model.expected_visits(draws=200, random_seed=0)
    assert visits.loc["START", "mean"] == 1.0
    assert visits.loc[["END", UNSEEN], "mean"].sum() == pytest.approx(1.0)
    assert visits.loc["frontend", "mean"] > 1  # frontend calls itself


def test_expected_visits_refuse_walks_that_never_end():
    loop = counts({("START", "a"): 3, ("a", "a"): 1, ("a", "b"): 1, ("b", "a"): 2, ("b", "b"): 1})
    model = TransitionModel(include_end=False).fit(loop)  # every row sees the whole support
    with pytest.raises(ValueError, match="never ends"):
        model.expected_visits("a")


def test_unknown_services_name_the_closest_known_ones(boutique):
    model = TransitionModel(mode="calls").fit(boutique)
    pattern = r"'frontnd'.*closest known: 'frontend'"
    with pytest.raises(ValueError, match=pattern):
        model.sample_paths("frontnd")
    with pytest.raises(ValueError, match=pattern):
        model.expected_visits("frontnd")
    with pytest.raises(ValueError, match=pattern):
        model.most_likely_paths("frontnd")
    with pytest.raises(ValueError, match=r"'cartsevice'.*'cartservice'"):
        model.path_probability(["START", "frontend", "cartsevice"])
    with pytest.raises(ValueError, match="closest known"):
        model.sample_paths("zzzz")  # no close match: still names some known states


# --------------------------------------------------------------- posterior draws
def test_sample_posterior_is_sparse_and_summarised_by_arviz():
    model = TransitionModel().fit(counts(SMALL), random_seed=1)
    tree = model.sample_posterior(draws=500, chains=2)
    assert tree is model.idata
    p = model.idata.posterior["p"]
    assert p.dims == ("chain", "draw", "edge")
    assert p.sizes["edge"] == len(model.transition_probabilities())
    assert "a -> b" in p["edge"].values
    np.testing.assert_allclose(p.groupby("source").sum(), 1.0, rtol=1e-12)
    table = model.transition_probabilities().set_index(["source", "target"])
    mean = p.mean(("chain", "draw"))
    se = p.std(("chain", "draw")) / math.sqrt(1000)
    expected = table.loc[
        list(zip(p["source"].values, p["target"].values, strict=True)), "mean"
    ].to_numpy()
    assert (abs(mean - expected) < 4 * se).all()
    summary = az.summary(model.idata)
    assert "p[a -> b]" in summary.index
    draws = model.transition_matrix(draws=3, random_seed=0)
    assert draws.dims == ("draw", "source", "target")
    np.testing.assert_allclose(draws.sum("target").drop_sel(source="END"), 1.0)


def test_seeds_make_fit_and_monte_carlo_reproducible():
    a = TransitionModel().fit(counts(SMALL), random_seed=9)
    b = TransitionModel().fit(counts(SMALL), random_seed=9)
    assert a.sample_paths(n=50) == b.sample_paths(n=50)
    assert a.path_probability(["START", "a", "END"]).equals(
        b.path_probability(["START", "a", "END"])
    )


# ---------------------------------------------------------------------- persistence
@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_save_load_round_trip(tmp_path, boutique, suffix):
    model = TransitionModel(mode="calls", prior=0.5, include_end=False).fit(boutique)
    model.sample_posterior(draws=50, random_seed=0)
    loaded = bayesperf.load(model.save(tmp_path / f"transitions{suffix}"))
    assert isinstance(loaded, TransitionModel)
    assert loaded.get_config() == model.get_config()
    assert loaded.fit_counts.equals(model.fit_counts)
    pd.testing.assert_frame_equal(
        loaded.transition_probabilities(), model.transition_probabilities()
    )
    xr.testing.assert_allclose(loaded.idata.posterior["p"], model.idata.posterior["p"])
    assert loaded.sample_paths(n=5, random_seed=1) == model.sample_paths(n=5, random_seed=1)


def test_fit_data_holds_the_counts(boutique):
    model = TransitionModel(mode="calls").fit(boutique)
    fit = model.idata["fit_data"].to_dataset()
    assert set(fit.data_vars) == {"source", "target", "count"}
    assert int(fit["count"].sum()) == bayesperf.count_transitions(boutique, "calls").total
    assert fit.attrs["mode"] == "calls"


# ---------------------------------------------------------------------- errors
def test_errors():
    with pytest.raises(NotFittedError):
        TransitionModel().transition_probabilities()
    with pytest.raises(ValueError, match="unknown transition mode"):
        TransitionModel(mode="dag")
    with pytest.raises(ValueError, match="alpha"):
        TransitionModel(prior=0.0)
    with pytest.raises(ValueError, match="unknown prior field"):
        TransitionModel(prior={"beta": 1})
    with pytest.raises(ValueError, match="mode='calls'"):
        TransitionModel().fit(counts(SMALL, mode="calls"))
    with pytest.raises(ValueError, match="no transitions"):
        TransitionModel().fit(TransitionCounts.empty())
    with pytest.raises(ValueError, match="no transitions"):
        TransitionModel(include_end=False).fit(counts({("a", "END"): 3}))
    model = TransitionModel().fit(counts(SMALL))
    with pytest.raises(ValueError, match="ci_prob"):
        model.transition_probabilities(ci_prob=1.5)
    with pytest.raises(ValueError, match=r"\(unseen\) can only end a path"):
        model.path_probability(["START", UNSEEN, "a"])


# --------------------------------------------------------------------------- scale
def test_three_thousand_services_stay_sparse():
    """10^6 transitions over 3,000 services: no dense states x states x draws array.

    Fit and the full exact table under 1 GB of traced allocations (dense draws would
    be ~134 GB) and in under 10 s (about 1-2 s here, tracemalloc included).
    """
    data = synthetic_counts()
    assert data.total == 10**6 and len(data.states) == 3002
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        model = TransitionModel().fit(data)
        table = model.transition_probabilities()
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1e9 and elapsed < 10, (peak, elapsed)
    assert len(table) == len(data.counts) + (table["target"] == UNSEEN).sum()
    np.testing.assert_allclose(row_sums(table), 1.0, rtol=1e-10)
    paths = model.sample_paths(n=1000, random_seed=0)
    assert all(p[0] == "START" for p in paths)
    with pytest.raises(ValueError, match="sparse"):
        model.transition_matrix(draws=10)
