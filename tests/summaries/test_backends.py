"""Parquet (batched) and Dask backends give exactly the pandas summaries."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bayesperf
from bayesperf.summaries import backends as B
from bayesperf.summaries.latency import summarize_latency
from bayesperf.summaries.transitions import count_transitions
from tests.summaries.test_transitions import random_traces, trace_tables

MODES = ["sequence", "calls"]
BYS = [("caller", "callee"), "service", "callee", None]


def write(frame: pd.DataFrame, path: Path, row_group_size: int | None = None) -> Path:
    """Write a span table with pyarrow, column by column (categories -> dictionaries)."""
    table = pa.table({c: frame[c] for c in frame.columns})
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def is_contiguous(frame: pd.DataFrame) -> bool:
    ids = frame["trace_id"].to_numpy(dtype=object)
    runs = ids[np.r_[True, ids[1:] != ids[:-1]]] if len(ids) else ids
    return len(runs) == len(set(runs))


@pytest.fixture(scope="module")
def boutique() -> pd.DataFrame:
    """The bundled traces, each trace's rows contiguous (the file interleaves two)."""
    spans = bayesperf.datasets.load_online_boutique()
    spans = spans.sort_values("trace_id", kind="stable").reset_index(drop=True)
    spans.attrs = {}
    return spans


@pytest.fixture(scope="module")
def boutique_parquet(boutique, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("parquet") / "boutique.parquet"
    return write(boutique, path, row_group_size=4_000)  # 6 row groups


@pytest.fixture(scope="module")
def mixed_links() -> pd.DataFrame:
    """Traces with parent links, then traces whose callers are known without links.

    "calls" leaves come from parent links or from caller names, decided per trace: a
    batch or partition holding only link-less traces counts them as the table does.
    """
    linked = random_traces(1, 40)
    flat = random_traces(2, 40, orphans=0.0)
    flat["parent_id"] = pd.Series(None, index=flat.index, dtype="str")
    table = pd.concat([linked, flat], ignore_index=True)
    for col in ("service", "caller", "callee"):
        table[col] = table[col].astype("str").astype("category")
    return table


# ---------------------------------------------------------------------- Parquet
@pytest.mark.parametrize("by", BYS)
@pytest.mark.parametrize("batch_size", [997, 1_000_000])
def test_parquet_latency_equals_pandas(boutique, boutique_parquet, by, batch_size):
    got = B.summarize_latency_parquet(boutique_parquet, by, batch_size=batch_size)
    assert got.equals(summarize_latency(boutique, by))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch_size", [499, 1_000_000])
def test_parquet_transitions_equal_pandas(boutique, boutique_parquet, mode, batch_size):
    got = B.count_transitions_parquet(boutique_parquet, mode, batch_size=batch_size)
    assert got.equals(count_transitions(boutique, mode))


def test_traces_longer_than_a_batch_are_carried(boutique, tmp_path):
    spans = boutique.iloc[:500]  # ~45 spans per trace, batches of 7 rows
    path = write(spans, tmp_path / "small.parquet", row_group_size=300)
    for mode in MODES:
        got = B.count_transitions_parquet(path, mode, batch_size=7)
        assert got.equals(count_transitions(spans, mode))


def test_dispatch_from_summarize_and_count(boutique, boutique_parquet):
    assert summarize_latency(boutique_parquet).equals(summarize_latency(boutique))
    assert summarize_latency(str(boutique_parquet), "service").equals(
        summarize_latency(boutique, "service")
    )
    for mode in MODES:
        assert count_transitions(boutique_parquet, mode).equals(count_transitions(boutique, mode))


def test_directory_of_files_with_a_trace_across_files(boutique, tmp_path):
    folder = tmp_path / "dataset"
    (folder / "part=1").mkdir(parents=True)
    # Cut inside traces: a trace continues in the next file (files are read in order).
    cuts = [0, 5_001, 12_345, len(boutique)]
    names = ["a.parquet", "b.pq", "part=1/c.parquet"]
    for name, lo, hi in zip(names, cuts[:-1], cuts[1:], strict=True):
        write(boutique.iloc[lo:hi], folder / name, row_group_size=3_000)
    (folder / "_SUCCESS").write_text("")
    (folder / "README.md").write_text("not data")
    assert B.is_parquet_path(folder)
    assert B.summarize_latency_parquet(folder, batch_size=2_000).equals(summarize_latency(boutique))
    for mode in MODES:
        got = count_transitions(folder, mode)
        assert got.equals(count_transitions(boutique, mode))


def test_parquet_without_suffix_is_recognised(boutique, tmp_path):
    path = write(boutique.iloc[:500], tmp_path / "spans.data")
    assert B.is_parquet_path(path) and not B.is_parquet_path(tmp_path / "missing.parquet")
    assert summarize_latency(path).equals(summarize_latency(boutique.iloc[:500]))


def test_contiguity_violation_is_an_error(tmp_path):
    spans = random_traces(5, 300)
    shuffled = spans.sample(frac=1.0, random_state=0).reset_index(drop=True)
    path = write(shuffled, tmp_path / "shuffled.parquet")
    for mode in MODES:
        with pytest.raises(ValueError, match=r"contiguous.*Sort the data by trace_id"):
            B.count_transitions_parquet(path, mode, batch_size=100)
        # One batch holds every trace whole: no carry-over, no error.
        whole = B.count_transitions_parquet(path, mode, batch_size=10**6)
        assert whole.equals(count_transitions(shuffled, mode))
        # Hash partitioning works for any row order.
        got = B.count_transitions_parquet(path, mode, batch_size=100, presorted=False)
        assert got.equals(count_transitions(shuffled, mode))
        got = B.count_transitions_parquet(
            path, mode, batch_size=100, presorted=False, n_buckets=3, tmpdir=tmp_path
        )
        assert got.equals(count_transitions(shuffled, mode))
    assert [p.name for p in tmp_path.iterdir()] == ["shuffled.parquet"]  # buckets removed


def test_bundled_file_order_interleaves_two_traces(tmp_path):
    """The bundled file interleaves two traces around rows 1287-1340."""
    spans = bayesperf.datasets.load_online_boutique()
    spans.attrs = {}
    path = write(spans, tmp_path / "file_order.parquet")
    with pytest.raises(ValueError, match=r"trace '(1184cf40|13e188c0)"):
        B.count_transitions_parquet(path, "calls", batch_size=1_300)
    got = B.count_transitions_parquet(path, "calls", batch_size=1_300, presorted=False)
    assert got.equals(count_transitions(spans, "calls"))


def test_mixed_parent_links(mixed_links, tmp_path):
    path = write(mixed_links, tmp_path / "mixed.parquet", row_group_size=50)
    expected = count_transitions(mixed_links, "calls")
    # Batches of 50 rows: the later batches hold only link-less traces.
    assert B.count_transitions_parquet(path, "calls", batch_size=50).equals(expected)
    assert B.count_transitions_parquet(path, "calls", batch_size=50, presorted=False).equals(
        expected
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frame=trace_tables(max_traces=6),
    batch_size=st.integers(1, 12),
    row_group_size=st.integers(1, 30),
    by=st.sampled_from(BYS),
)
def test_parquet_batches_property(frame, batch_size, row_group_size, by):
    with tempfile.TemporaryDirectory() as tmp:
        path = write(frame, Path(tmp) / "t.parquet", row_group_size=row_group_size)
        got = B.summarize_latency_parquet(path, by, batch_size=batch_size)
        assert got.equals(summarize_latency(frame, by))
        for mode in MODES:
            expected = count_transitions(frame, mode)
            try:
                got = B.count_transitions_parquet(path, mode, batch_size=batch_size)
            except ValueError as exc:  # allowed only when traces are interleaved
                assert "contiguous" in str(exc)
                assert not is_contiguous(frame)
            else:
                assert got.equals(expected)
            got = B.count_transitions_parquet(
                path, mode, batch_size=batch_size, presorted=False, tmpdir=tmp
            )
            assert got.equals(expected)


def test_parquet_errors(boutique, tmp_path):
    bad = boutique.iloc[:3_000].copy()
    bad.loc[2_500, "latency"] = -1.0
    path = write(bad, tmp_path / "bad.parquet", row_group_size=1_000)
    with pytest.raises(ValueError, match=r"bad\.parquet \(batch of rows 2000-2999\).*row 500"):
        B.summarize_latency_parquet(path, batch_size=1_000)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['operation_x'\]"):
        B.summarize_latency_parquet(path, "operation_x")
    no_caller = write(boutique.drop(columns="caller").iloc[:10], tmp_path / "nc.parquet")
    with pytest.raises(ValueError, match=r"'calls' transitions need column\(s\) \['caller'\]"):
        B.count_transitions_parquet(no_caller, "calls")
    assert B.count_transitions_parquet(no_caller, "sequence").total == 10 + 1
    with pytest.raises(ValueError, match="batch_size must be a positive"):
        B.summarize_latency_parquet(path, batch_size=0)
    with pytest.raises(FileNotFoundError):
        B.summarize_latency_parquet(tmp_path / "nope.parquet")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(ValueError, match=r"holds no \.parquet"):
        B.summarize_latency_parquet(empty_dir)
    no_trace = boutique.iloc[:10].copy()
    no_trace.loc[4, "trace_id"] = None
    path = write(no_trace, tmp_path / "no_trace.parquet")
    with pytest.raises(ValueError, match="row 4: span without a trace id"):
        B.count_transitions_parquet(path, "sequence")


def test_hash_set():
    s = B._HashSet()
    rng = np.random.default_rng(0)
    members = rng.integers(0, 2**63, 5_000, dtype=np.uint64)
    for chunk in np.array_split(members, 37):
        s.add(chunk)
    assert len(s) == len(np.unique(members))
    assert len(s.runs) <= int(np.log2(len(members))) + 1
    others = rng.integers(0, 2**63, 1_000, dtype=np.uint64)
    assert s.contains(members).all()
    assert not s.contains(np.setdiff1d(others, members)).any()
    assert not B._HashSet().contains(members).any()


def test_dask_import_error_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)
    with pytest.raises(ImportError, match=r'pip install "bayesperf\[dask\]"'):
        B._import_dask()


# ------------------------------------------------------------------------- Dask
@pytest.fixture(scope="module")
def client():
    # pyproject turns warnings into errors. With distributed 2026.8 starting and closing
    # this cluster emits no Python warning, so none is filtered here. (The p2p shuffle
    # logs "Shuffle ... initialized/deactivated" through logging, not warnings.)
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def recategorize(part: pd.DataFrame) -> pd.DataFrame:
    """Per-partition categories: each partition knows only its own service names."""
    out = part.copy()
    for col in ("service", "caller", "callee"):
        out[col] = out[col].astype("str").astype("category")
    return out


@pytest.mark.dask
def test_dask_latency_equals_pandas(client, boutique):
    dd = pytest.importorskip("dask.dataframe")
    ddf = dd.from_pandas(boutique, npartitions=4)
    for by in ("service", None):
        assert summarize_latency(ddf, by).equals(summarize_latency(boutique, by))
    # Partitions with different category sets, and empty partitions.
    mixed = ddf.map_partitions(recategorize)
    assert B.summarize_latency_dask(mixed, split_every=2).equals(summarize_latency(boutique))
    fast = boutique[boutique["latency"] < 1.0]
    filtered = ddf[ddf["latency"] < 1.0]
    assert summarize_latency(filtered).equals(summarize_latency(fast))
    with pytest.raises(ValueError, match=r"needs column\(s\) \['nope'\]"):
        summarize_latency(ddf, "nope")


@pytest.mark.dask
@pytest.mark.parametrize("mode", MODES)
def test_dask_transitions_equal_pandas(client, boutique, mode):
    dd = pytest.importorskip("dask.dataframe")
    expected = count_transitions(boutique, mode)
    ddf = dd.from_pandas(boutique, npartitions=4)
    assert count_transitions(ddf, mode).equals(expected)
    # The file order (two interleaved traces), other categories, more partitions.
    raw = bayesperf.datasets.load_online_boutique()
    raw.attrs = {}
    other = dd.from_pandas(raw, npartitions=5).map_partitions(recategorize)
    got = B.count_transitions_dask(other, mode, npartitions=7)
    assert got.equals(count_transitions(raw, mode))


@pytest.mark.dask
def test_dask_transitions_ties_orphans_and_mixed_links(client, mixed_links):
    dd = pytest.importorskip("dask.dataframe")
    ties = random_traces(9, 200)  # start times 0..19 with many ties, some missing
    ddf = dd.from_pandas(ties, npartitions=6)
    for mode in MODES:
        assert count_transitions(ddf, mode).equals(count_transitions(ties, mode))
    # 30 partitions after the shuffle: some hold only link-less traces.
    ddf = dd.from_pandas(mixed_links, npartitions=3)
    got = B.count_transitions_dask(ddf, "calls", npartitions=30)
    assert got.equals(count_transitions(mixed_links, "calls"))


# ----------------------------------------------------------------- streaming CSV


def test_streaming_csv_summary_equals_read_traces_path(tmp_path):
    spans = bayesperf.datasets.load_online_boutique()
    path = tmp_path / "spans.csv"
    columns = ["trace_id", "span_id", "parent_id", "service", "caller", "callee", "latency"]
    spans[columns].to_csv(path, index=False)
    expected = bayesperf.summarize_latency(bayesperf.read_traces(path))
    from bayesperf.summaries.backends import summarize_latency_csv

    # Small blocks: many partial summaries, added exactly.
    assert summarize_latency_csv(path, block_size=64 << 10).equals(expected)
    assert bayesperf.summarize_latency(path).equals(expected)  # dispatch on a .csv path
    by_service = bayesperf.summarize_latency(bayesperf.read_traces(path), by="service")
    assert summarize_latency_csv(path, by="service").equals(by_service)


def test_streaming_csv_errors_name_the_rows(tmp_path):
    from bayesperf.summaries.backends import summarize_latency_csv

    path = tmp_path / "bad.csv"
    path.write_text("trace_id,caller,callee,latency\nt,a,b,1.0\nt,a,b,-2.0\n")
    with pytest.raises(ValueError, match=r"bad.csv \(data rows 0-1\).*negative"):
        summarize_latency_csv(path)
    path.write_text("trace_id,callee,latency\nt,b,1.0\n")
    with pytest.raises(ValueError, match="cannot read columns"):
        summarize_latency_csv(path)
