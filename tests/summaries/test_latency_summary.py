"""Latency summaries: exact merging (property tests) and known values."""

from __future__ import annotations

import functools
import itertools
import operator

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bayesperf
from bayesperf.summaries.bins import DEFAULT_BINS, LogBins
from bayesperf.summaries.latency import LOG_SCALE, NS_PER_MS, LatencySummary, summarize_latency

NAMES = ["a", "b", "cart", "frontend", "redis"]
BYS = [("caller", "callee"), ("callee", "caller"), "caller", "callee", None]

# Latencies in ms: exact zeros, below the 1 µs clock resolution, ordinary, above 1 h (up
# to the overflow bin and beyond), and exact bin edges.
latencies = st.one_of(
    st.just(0.0),
    st.floats(min_value=1e-9, max_value=1e-3, exclude_max=True),
    st.floats(min_value=1e-3, max_value=1e4),
    st.floats(min_value=3.6e6, max_value=1e10),
    st.sampled_from(DEFAULT_BINS.edges[1:-1:37].tolist()),
)


@st.composite
def span_tables(draw, min_rows: int = 1, max_rows: int = 40) -> pd.DataFrame:
    n = draw(st.integers(min_rows, max_rows))
    callers = draw(st.lists(st.sampled_from([*NAMES, None]), min_size=n, max_size=n))
    callees = draw(st.lists(st.sampled_from(NAMES), min_size=n, max_size=n))
    latency = draw(st.lists(latencies, min_size=n, max_size=n))
    frame = pd.DataFrame(
        {
            "caller": pd.Series(callers, dtype="str"),
            "callee": pd.Series(callees, dtype="str"),
            "latency": np.array(latency, dtype=np.float64),
        }
    )
    if draw(st.booleans()):  # categorical, as read_traces returns them
        frame["caller"] = pd.Categorical(frame["caller"], categories=NAMES)
        frame["callee"] = pd.Categorical(frame["callee"], categories=NAMES)
    return frame


def pieces(frame: pd.DataFrame, cuts: list[int]) -> list[pd.DataFrame]:
    bounds = [0, *sorted(c % (len(frame) + 1) for c in cuts), len(frame)]
    parts = [frame.iloc[lo:hi] for lo, hi in itertools.pairwise(bounds)]
    return [p for p in parts if len(p)]


# ------------------------------------------------------------------ property tests
@settings(max_examples=80, deadline=None)
@given(
    frame=span_tables(),
    cuts=st.lists(st.integers(0, 10_000), min_size=1, max_size=4),
    by=st.sampled_from(BYS),
    order=st.randoms(use_true_random=False),
)
def test_summary_of_union_equals_merge_of_summaries(frame, cuts, by, order):
    whole = summarize_latency(frame, by)
    parts = [summarize_latency(p, by) for p in pieces(frame, cuts)]
    assert functools.reduce(operator.add, parts).equals(whole)
    order.shuffle(parts)  # any merge order gives the same numbers
    assert functools.reduce(operator.add, parts).equals(whole)


@settings(max_examples=60, deadline=None)
@given(a=span_tables(), b=span_tables(), by=st.sampled_from(BYS))
def test_merge_is_commutative_and_matches_concat(a, b, by):
    sa, sb = summarize_latency(a, by), summarize_latency(b, by)
    both = summarize_latency(pd.concat([a, b], ignore_index=True), by)
    assert (sa + sb).equals(both)
    assert (sa + sb).equals(sb + sa)


@settings(max_examples=30, deadline=None)
@given(a=span_tables(), b=span_tables(), c=span_tables(), by=st.sampled_from(BYS))
def test_merge_is_associative(a, b, c, by):
    sa, sb, sc = (summarize_latency(x, by) for x in (a, b, c))
    assert ((sa + sb) + sc).equals(sa + (sb + sc))


@settings(max_examples=50, deadline=None)
@given(frame=span_tables(), by=st.sampled_from(BYS), perm=st.randoms(use_true_random=False))
def test_row_order_does_not_matter(frame, by, perm):
    rows = list(range(len(frame)))
    perm.shuffle(rows)
    assert summarize_latency(frame.iloc[rows], by).equals(summarize_latency(frame, by))


@settings(max_examples=50, deadline=None)
@given(frame=span_tables())
def test_summary_statistics_match_direct_computation(frame):
    s = summarize_latency(frame, by=None)
    y = frame["latency"].to_numpy()
    assert s.count.tolist() == [len(y)]
    assert s.n_censored.tolist() == [int((y < 1e-3).sum())]
    assert s.minimum[0] == y.min() and s.maximum[0] == y.max()
    assert s.sum_ns[0] == int(np.rint(y * NS_PER_MS).astype(np.int64).sum())
    observed = y[y >= 1e-3]
    assert s.sum_log_fx[0] == int(np.rint(np.log(observed) * LOG_SCALE).astype(np.int64).sum())
    assert s.bin_counts.sum() == len(y)


def test_empty_summary_is_identity():
    spans = pd.DataFrame({"caller": ["a"], "callee": ["b"], "latency": [1.0]})
    s = summarize_latency(spans)
    assert (LatencySummary.empty() + s).equals(s)


def test_empty_table_gives_empty_summary():
    empty = pd.DataFrame({"caller": [], "callee": [], "latency": []})
    s = summarize_latency(empty)
    assert s.n_groups == 0 and s.bin_counts.shape == (0, DEFAULT_BINS.n_bins)
    assert (s + s).n_groups == 0


# --------------------------------------------------------------------- bin grid
def test_documented_bin_indices():
    bins = DEFAULT_BINS
    y = np.array([0.0, 0.0005, np.nextafter(1e-3, 0), 1e-3, 1.0, 3.6e6, 1e9, 1e300])
    assert bins.index(y).tolist() == [0, 0, 0, 1, 346, 1101, 1102, 1102]
    assert bins.n_bins == 1103 and len(bins.edges) == bins.n_bins + 1
    assert bins.edges[0] == 0 and bins.edges[1] == 1e-3 and np.isinf(bins.edges[-1])
    assert bins.edges[-2] >= 3.6e6 > bins.edges[-3]


def test_bin_ratio_and_representative_accuracy():
    bins = DEFAULT_BINS
    ratios = bins.edges[2:-1] / bins.edges[1:-2]
    np.testing.assert_allclose(ratios, bins.gamma, rtol=1e-12)
    lo, hi = bins.edges[1:-2], bins.edges[2:-1]
    rep = 2 * lo * bins.gamma / (1 + bins.gamma)
    # DDSketch guarantee: |value - representative| <= 1% of the value, over [lo, hi].
    assert np.all(np.abs(rep / lo - 1) <= 0.01 + 1e-12)
    assert np.all(np.abs(rep / hi - 1) <= 0.01 + 1e-12)


def test_random_values_land_between_their_edges():
    rng = np.random.default_rng(0)
    y = np.exp(rng.uniform(np.log(1e-5), np.log(1e8), 200_000))
    i = DEFAULT_BINS.index(y)
    edges = DEFAULT_BINS.edges
    assert np.all((edges[i] <= y) & (y < edges[i + 1]))


def test_underflow_and_overflow_bins():
    spans = pd.DataFrame({"latency": [0.0, 1e-6, 5e-4, 4e6, 1e8, 2.0]})
    s = summarize_latency(spans, by=None)
    assert s.n_censored.tolist() == [3]
    assert s.bin_counts[0, -1] == 2
    assert s.n_observed.tolist() == [3]
    # Censored spans stay out of the log moments; the exact mean keeps them.
    np.testing.assert_allclose(s.sum_log[0], np.log([4e6, 1e8, 2.0]).sum(), atol=1e-5)
    np.testing.assert_allclose(s.mean[0], spans["latency"].mean(), rtol=1e-12)
    # Quantiles: 0 in the underflow bin, the maximum in the overflow bin.
    assert s.quantile([0.1, 1.0]).tolist() == [[0.0, 1e8]]


def test_edge_values_land_in_the_bin_they_open():
    bins = DEFAULT_BINS
    edges = bins.edges
    at = edges[1:-1]  # each finite edge opens bin i (half-open [edges[i], edges[i+1]))
    assert bins.index(at).tolist() == list(range(1, bins.n_bins))
    below = np.nextafter(edges[2:-1], 0)  # one ulp below closes the previous bin
    assert bins.index(below).tolist() == list(range(1, bins.n_bins - 1))


@pytest.mark.parametrize("bins", [DEFAULT_BINS, LogBins(1e-6, 10.0, 0.05)])
def test_a_given_logarithm_gives_the_same_bins(bins):
    """The bins are settled on the edges, whatever rounding the logarithm had."""
    edges = bins.edges[1:-1]
    rng = np.random.default_rng(1)
    y = np.concatenate(
        [edges, np.nextafter(edges, 0), np.nextafter(edges, np.inf), [0.0, np.inf, 1e308]]
    )
    y = np.concatenate([y, np.exp(rng.uniform(np.log(1e-8), np.log(1e9), 100_000))])
    with np.errstate(divide="ignore"):
        log_y = np.log(y)
    expected = bins.index(y)
    assert np.array_equal(bins.index(y, log_latency=log_y), expected)
    # Even a logarithm off by a few ulps (another libm) lands every value in its bin.
    assert np.array_equal(bins.index(y, log_latency=log_y * (1 + 4e-16)), expected)
    assert np.all((bins.edges[expected] <= y) & (y < bins.edges[expected + 1]) | np.isinf(y))


def test_loggrid_validation():
    with pytest.raises(ValueError, match="relative_accuracy"):
        LogBins(relative_accuracy=0.6)
    with pytest.raises(ValueError, match="lowest_ms < highest_ms"):
        LogBins(lowest_ms=10.0, highest_ms=1.0)


# -------------------------------------------------------------------- quantiles
def test_quantiles_within_one_percent_on_lognormal():
    rng = np.random.default_rng(42)
    y = rng.lognormal(mean=1.0, sigma=1.5, size=100_000)
    s = summarize_latency(pd.DataFrame({"latency": y}), by=None)
    central = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99]
    est, ref = s.quantile(central)[0], np.quantile(y, central)
    np.testing.assert_allclose(est, ref, rtol=0.01)
    # Far tails hold ~100 samples: the estimate is still within its bin (gamma - 1 ~ 2%).
    tails = [0.001, 0.999]
    est, ref = s.quantile(tails)[0], np.quantile(y, tails)
    np.testing.assert_allclose(est, ref, rtol=DEFAULT_BINS.gamma - 1)
    assert s.quantile([0.0, 1.0]).tolist() == [[y.min(), y.max()]]


def test_quantiles_per_group_and_errors():
    spans = pd.DataFrame(
        {"caller": ["a"] * 3 + ["b"] * 2, "callee": "x", "latency": [1.0, 2, 3, 10, 20]}
    )
    s = summarize_latency(spans)
    q = s.quantile(0.5)
    assert q.shape == (2, 1)
    np.testing.assert_allclose(q[:, 0], [2.0, 15.0], rtol=0.35)  # bins, not interpolation
    with pytest.raises(ValueError, match=r"quantiles must be in \[0, 1\]"):
        s.quantile(1.5)


def test_to_frame_values():
    spans = pd.DataFrame({"caller": ["a", "a"], "callee": ["b", "b"], "latency": [1.0, 3.0]})
    table = summarize_latency(spans).to_frame()
    row = table.loc[("a", "b")]
    assert row["n"] == 2 and row["mean"] == 2.0 and row["min"] == 1.0 and row["max"] == 3.0
    np.testing.assert_allclose(row["log_mean"], np.log(3.0) / 2, atol=1e-6)


# --------------------------------------------------------------- from_histogram
def test_from_histogram_prometheus_cumulative():
    s = LatencySummary.from_histogram(
        [0, 5, 10, 25, np.inf],
        [[40, 90, 99, 100], [0, 0, 1, 3]],
        groups=["x", "y"],
        by="service",
        cumulative=True,
    )
    assert s.bin_counts.tolist() == [[40, 50, 9, 1], [0, 0, 1, 2]]
    assert s.count.tolist() == [100, 3]
    assert not s.has_moments and s.bins is None
    assert np.isnan(s.mean).all() and np.isnan(s.minimum).all()
    assert list(s.groups) == ["x", "y"] and s.groups.name == "service"
    # The median of x is in [5, 10): interpolated, not extrapolated.
    assert 5 <= s.quantile(0.5)[0, 0] < 10
    # Histograms merge with histograms on the same buckets.
    assert (s + s).count.tolist() == [200, 6]


def test_from_histogram_plain_counts_and_multi_column_groups():
    s = LatencySummary.from_histogram(
        [1, 2, 4], [[1, 2], [3, 4]], groups=[("a", "b"), ("a", "c")], by=("caller", "callee")
    )
    assert s.groups.names == ["caller", "callee"] and s.count.tolist() == [3, 7]


@pytest.mark.parametrize(
    ("edges", "counts", "kwargs", "match"),
    [
        ([0, 5, 10, np.inf], [40, 30, 50], {"cumulative": True}, "must not decrease"),
        ([0, 5, 10], [1, 2, 3], {}, "counts have 3 buckets per row but 3 edges define 2"),
        ([0, 5, 10], [1, -2], {}, "non-negative whole numbers"),
        ([0, 5, 10], [1, 2.5], {}, "non-negative whole numbers"),
        ([0, 10, 5], [1, 2], {}, "strictly increasing"),
        ([-1, 5], [1], {}, "strictly increasing"),
        ([5], [], {}, "at least two"),
        ([0, 5, 10], [[1, 2], [3, 4]], {}, "need 2 group labels"),
        ([0, 5, 10], [[1, 2], [3, 4]], {"groups": ["a"]}, "1 group labels for 2 rows"),
    ],
)
def test_from_histogram_errors(edges, counts, kwargs, match):
    with pytest.raises(ValueError, match=match):
        LatencySummary.from_histogram(edges, counts, **kwargs)


# -------------------------------------------------------------- merge / select
def test_merge_errors():
    spans = pd.DataFrame({"caller": ["a"], "callee": ["b"], "service": ["b"], "latency": [1.0]})
    pair, service = summarize_latency(spans), summarize_latency(spans, "service")
    with pytest.raises(ValueError, match="grouped by"):
        _ = pair + service
    coarse = summarize_latency(spans, bins=LogBins(relative_accuracy=0.02))
    with pytest.raises(ValueError, match="different bin grids"):
        _ = pair + coarse
    hist = LatencySummary.from_histogram(
        [0, 1, np.inf], [1, 1], groups=[("a", "b")], by=("caller", "callee")
    )
    with pytest.raises(ValueError, match="different bin grids"):
        _ = pair + hist
    with pytest.raises(TypeError):
        _ = pair + 1


def test_select():
    spans = pd.DataFrame(
        {"caller": ["a", "a", None], "callee": ["b", "c", "a"], "latency": [1.0, 2.0, 3.0]}
    )
    s = summarize_latency(spans)
    picked = s.select([("a", "c"), ("a", "b")])
    assert list(picked.groups) == [("a", "c"), ("a", "b")]
    assert picked.maximum.tolist() == [2.0, 1.0]
    with pytest.raises(KeyError, match="groups not in the summary"):
        s.select([("a", "b"), ("x", "y")])
    one = summarize_latency(spans, "callee")
    assert one.select(["c"]).count.tolist() == [1]
    with pytest.raises(KeyError, match=r"\['zz'\]"):
        one.select(["zz"])


def test_missing_caller_is_its_own_group_and_last():
    spans = pd.DataFrame(
        {"caller": [None, "a", None], "callee": ["a", "b", "a"], "latency": [1.0, 2.0, 3.0]}
    )
    s = summarize_latency(spans)
    assert s.count.tolist() == [1, 2]
    assert s.groups[0] == ("a", "b") and pd.isna(s.groups[1][0])


# ------------------------------------------------------------- summarize errors
def test_summarize_errors():
    spans = pd.DataFrame({"caller": ["a", "a"], "callee": ["b", "b"], "latency": [1.0, -1.0]})
    with pytest.raises(ValueError, match=r"1 latencies are missing, negative.*row 1"):
        summarize_latency(spans)
    with pytest.raises(ValueError, match="missing, negative or infinite"):
        summarize_latency(spans.assign(latency=[1.0, np.nan]))
    with pytest.raises(ValueError, match="missing, negative or infinite"):
        summarize_latency(spans.assign(latency=[np.inf, 1.0]))
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['service'\]"):
        summarize_latency(spans, "service")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['latency'\]"):
        summarize_latency(spans.drop(columns="latency"))


def test_summarize_rejects_what_it_cannot_read(tmp_path):
    path = tmp_path / "spans.json"
    path.write_text('{"data": []}')
    with pytest.raises(ValueError, match=r"read other formats with bayesperf\.read_traces"):
        summarize_latency(path)
    # A canonical CSV is streamed; one without the grouping columns names them.
    path = tmp_path / "spans.csv"
    path.write_text("trace_id,service,latency\nt,a,1.0\n")
    with pytest.raises(ValueError, match=r"cannot read columns \['caller', 'callee', 'latency'\]"):
        summarize_latency(path)
    assert summarize_latency(path, by="service").count.tolist() == [1]
    with pytest.raises(TypeError, match="not dict"):
        summarize_latency({"latency": [1.0]})


def test_bundled_dataset_summary():
    spans = bayesperf.datasets.load_online_boutique()
    s = summarize_latency(spans)
    assert int(s.count.sum()) == len(spans)
    by_pair = spans.groupby(["caller", "callee"], observed=True, dropna=False)["latency"]
    expected = by_pair.agg(["count", "min", "max", "mean"])
    table = s.to_frame()
    assert len(table) == len(expected)
    expected = expected.reindex(pd.MultiIndex.from_tuples(list(table.index)))
    assert table["n"].tolist() == expected["count"].tolist()
    assert table["min"].tolist() == expected["min"].tolist()
    assert table["max"].tolist() == expected["max"].tolist()
    np.testing.assert_allclose(table["mean"], expected["mean"], rtol=1e-9)


def test_group_names_single_column():
    spans = pd.DataFrame({"service": ["a", "b"], "latency": [1.0, 2.0]})
    assert summarize_latency(spans, "service").groups.name == "service"
    assert summarize_latency(spans, None).groups.tolist() == ["all"]


def test_group_names_several_columns():
    spans = pd.DataFrame({"caller": ["a"], "callee": ["b"], "latency": [1.0]})
    s = summarize_latency(spans)
    assert s.groups.names == ["caller", "callee"]
    assert s.to_frame().index.names == ["caller", "callee"]
