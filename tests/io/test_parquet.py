"""The ``parquet`` reader and :func:`bayesperf.io.parquet.write_parquet`."""

import gzip
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import bayesperf
from bayesperf import TraceFormatError, TraceReadWarning
from bayesperf.io import parquet
from bayesperf.io.parquet import write_parquet
from bayesperf.schema import SPAN_COLUMNS, SPAN_DTYPES


@pytest.fixture
def spans() -> pd.DataFrame:
    """A canonical table with every column, missing values and a zero latency."""
    frame = pd.DataFrame(
        {
            "trace_id": ["t1", "t1", "t1", "t2"],
            "span_id": ["a", "b", "c", "a"],
            "parent_id": [None, "a", "zz", None],
            "service": ["front", "cart", "cart", "front"],
            "operation": ["GET /", "Get", None, "GET /"],
            "start_time": [
                "2024-05-01T12:00:00.000000001Z",
                "2024-05-01T12:00:00.5Z",
                None,
                "2024-05-01T12:00:01Z",
            ],
            "latency": [12.5, 0.0, 3.25, 7.0],
            "error": ["false", "true", None, "0"],
        }
    )
    return bayesperf.read_traces(frame)


def write_table(path: Path, columns: dict) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def test_round_trip(tmp_path, spans):
    assert spans.attrs["read_report"].flagged["parent_missing"] == 1
    path = tmp_path / "spans.parquet"
    write_parquet(spans, path)
    back = bayesperf.read_traces(path)
    pd.testing.assert_frame_equal(back, spans)
    assert back.attrs["read_report"].format == "parquet"
    assert back.attrs["read_report"].kept == len(spans)
    assert dict(back.dtypes.astype(str)) == {c: SPAN_DTYPES[c] for c in SPAN_COLUMNS}


def test_round_trip_keeps_nanoseconds_and_missing_values(tmp_path, spans):
    path = tmp_path / "spans.parquet"
    write_parquet(spans, path)
    back = bayesperf.read_traces(path)
    assert back["start_time"].iloc[0].value % 1000 == 1
    assert back["start_time"].isna().tolist() == [False, False, True, False]
    assert back["error"].isna().tolist() == [False, False, True, False]
    assert back["parent_id"].isna().tolist() == [True, False, False, True]
    assert back["latency"].tolist() == [12.5, 0.0, 3.25, 7.0]


def test_write_stores_canonical_types(tmp_path, spans):
    path = tmp_path / "spans.parquet"
    write_parquet(spans.assign(extra=1), path)
    schema = pq.read_schema(path)
    assert schema.names == list(SPAN_COLUMNS)  # only canonical columns, in order
    assert schema.field("start_time").type == pa.timestamp("ns", tz="UTC")
    assert schema.field("latency").type == pa.float64()
    assert schema.field("error").type == pa.bool_()
    assert pa.types.is_dictionary(schema.field("service").type)


def test_write_ignores_attrs_without_warning(tmp_path, spans):
    # pyproject turns warnings into errors: pandas-metadata serialisation of attrs
    # (a ReadReport is not JSON) would warn here.
    assert "read_report" in spans.attrs
    write_parquet(spans, tmp_path / "spans.parquet")


def test_empty_table_is_empty_input(tmp_path, spans):
    # Writing an empty table works; reading it back is "empty input", as for every format.
    path = tmp_path / "empty.parquet"
    write_parquet(spans.iloc[:0], path)
    with pytest.raises(TraceFormatError, match="no span records"):
        bayesperf.read_traces(path)


def test_write_needs_required_columns(tmp_path, spans):
    with pytest.raises(TraceFormatError, match=r"lacks column\(s\) \['latency'\]"):
        write_parquet(spans.drop(columns="latency"), tmp_path / "x.parquet")
    with pytest.raises(TraceFormatError, match="service"):
        write_parquet(spans.drop(columns=["service", "callee"]), tmp_path / "x.parquet")


def test_minimum_columns(tmp_path):
    path = write_table(
        tmp_path / "min.parquet",
        {"trace_id": ["t", "t"], "service": ["a", "b"], "latency": [1.0, 2.0]},
    )
    spans = bayesperf.read_traces(path)
    assert spans["service"].tolist() == ["a", "b"]
    assert spans["callee"].tolist() == ["a", "b"]
    assert spans["span_id"].tolist() == ["0", "1"]  # numbered within the trace
    assert spans["caller"].isna().all()


def test_callee_stands_for_service(tmp_path):
    path = write_table(
        tmp_path / "edges.parquet",
        {
            "trace_id": ["t", "t"],
            "caller": [None, "a"],
            "callee": ["a", "b"],
            "latency": [3, 1],  # integer latency is fine
        },
    )
    spans = bayesperf.read_traces(path)
    assert spans["service"].tolist() == ["a", "b"]
    assert spans["caller"].tolist()[1] == "a"
    assert spans["latency"].dtype == "float64"


def test_other_columns_are_ignored(tmp_path):
    path = write_table(
        tmp_path / "x.parquet",
        {"trace_id": ["t"], "service": ["a"], "latency": [1.0], "note": [{"k": 1}]},
    )
    assert list(bayesperf.read_traces(path).columns) == list(SPAN_COLUMNS)


def test_start_time_types(tmp_path):
    ns = 1_714_564_800_123_456_789
    as_int = write_table(
        tmp_path / "int.parquet",
        {"trace_id": ["t"], "service": ["a"], "latency": [1.0], "start_time": [ns]},
    )
    naive = write_table(
        tmp_path / "naive.parquet",
        {
            "trace_id": ["t"],
            "service": ["a"],
            "latency": [1.0],
            "start_time": pa.array([ns // 1000], pa.timestamp("us")),
        },
    )
    with_gap = write_table(
        tmp_path / "gap.parquet",
        {
            "trace_id": [1, 2, 3],  # integer ids become text
            "service": ["a", "b", "c"],
            "latency": pa.array([3, 4, None], pa.int64()),
            "start_time": pa.array([ns, None, ns], pa.int64()),
        },
    )
    assert bayesperf.read_traces(as_int)["start_time"].item().value == ns
    gap = bayesperf.read_traces(with_gap)
    assert gap.attrs["read_report"].dropped["missing_latency"] == 1
    assert gap["start_time"].iloc[0].value == ns  # exact: not through float64
    assert pd.isna(gap["start_time"].iloc[1])
    assert gap["trace_id"].tolist() == ["1", "2"]
    assert gap["latency"].tolist() == [3.0, 4.0]
    assert bayesperf.read_traces(naive)["start_time"].item().value == ns // 1000 * 1000


def test_error_column_with_nulls(tmp_path):
    path = write_table(
        tmp_path / "x.parquet",
        {
            "trace_id": ["t"] * 3,
            "service": ["a"] * 3,
            "latency": [1.0] * 3,
            "error": [True, None, False],
        },
    )
    assert bayesperf.read_traces(path)["error"].tolist() == [True, pd.NA, False]


def test_missing_and_negative_latency_are_counted(tmp_path):
    path = write_table(
        tmp_path / "x.parquet",
        {"trace_id": ["t"] * 3, "service": ["a"] * 3, "latency": [1.0, None, -1.0]},
    )
    with pytest.warns(TraceReadWarning, match=r"x\.parquet: kept only 1 of 3"):
        report = bayesperf.read_traces(path).attrs["read_report"]
    assert (report.records, report.kept) == (3, 1)
    assert dict(report.dropped) == {"missing_latency": 1, "negative_latency": 1}


def test_non_numeric_latency_names_the_row(tmp_path):
    path = write_table(
        tmp_path / "x.parquet",
        {"trace_id": ["t", "t"], "service": ["a", "b"], "latency": ["1.5", "fast"]},
    )
    with pytest.raises(TraceFormatError) as err:
        bayesperf.read_traces(path)
    assert str(path) in str(err.value)
    assert "row 1" in str(err.value)
    assert "'fast'" in str(err.value)


def test_missing_required_columns(tmp_path):
    path = write_table(tmp_path / "x.parquet", {"trace_id": ["t"], "duration": [1.0]})
    with pytest.raises(TraceFormatError) as err:
        bayesperf.read_traces(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "schema" in msg
    assert "'latency'" in msg
    assert "service (or callee)" in msg
    assert "trace_id'" not in msg.split(";")[0]


def test_not_parquet(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_bytes(b"trace_id,service,latency\nt,a,1\n")
    with pytest.raises(TraceFormatError) as err:
        bayesperf.read_traces(path)
    assert str(path) in str(err.value)
    assert "cannot read Parquet" in str(err.value)


def test_truncated_file(tmp_path, spans):
    whole = tmp_path / "whole.parquet"
    write_parquet(spans, whole)
    data = whole.read_bytes()
    for cut in (len(data) // 2, len(data) - 3, 8):
        path = tmp_path / f"cut{cut}.parquet"
        path.write_bytes(data[:cut])
        with pytest.raises(TraceFormatError) as err:
            bayesperf.read_traces(path)
        assert str(path) in str(err.value)


def test_corrupt_page(tmp_path, spans):
    whole = tmp_path / "whole.parquet"
    write_parquet(pd.concat([spans] * 500, ignore_index=True), whole, compression="none")
    data = bytearray(whole.read_bytes())
    data[100:2000] = b"\xff" * 1900  # inside the column chunks, footer intact
    path = tmp_path / "bad.parquet"
    path.write_bytes(bytes(data))
    with pytest.raises(TraceFormatError) as err:
        bayesperf.read_traces(path)
    assert str(path) in str(err.value)


def test_sniffed_by_suffix_or_magic(tmp_path, spans):
    pq_file = tmp_path / "spans.pq"
    write_parquet(spans, pq_file)
    bare = tmp_path / "spans.bin"
    bare.write_bytes(pq_file.read_bytes())
    for path in (pq_file, bare):
        assert bayesperf.read_traces(path).attrs["read_report"].format == "parquet"
    assert parquet.FORMAT.sniff(Path("x.PARQUET"), b"")
    assert not parquet.FORMAT.sniff(Path("x.csv"), b"trace_id,")


def test_gzip(tmp_path, spans):
    raw = tmp_path / "spans.parquet"
    write_parquet(spans, raw)
    path = tmp_path / "spans.parquet.gz"
    path.write_bytes(gzip.compress(raw.read_bytes()))
    pd.testing.assert_frame_equal(bayesperf.read_traces(path), spans)
    truncated = tmp_path / "cut.parquet.gz"
    truncated.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(TraceFormatError, match=r"cut\.parquet\.gz"):
        bayesperf.read_traces(truncated, format="parquet")


def test_directory_of_files(tmp_path, spans):
    folder = tmp_path / "dataset"
    folder.mkdir()
    write_parquet(spans[spans.trace_id == "t1"], folder / "part-0.parquet")
    write_parquet(spans[spans.trace_id == "t2"], folder / "part-1.parquet")
    (folder / "_SUCCESS").write_text("")
    back = bayesperf.read_traces(folder)
    assert back.attrs["read_report"].sources == [
        str(folder / "part-0.parquet"),
        str(folder / "part-1.parquet"),
    ]
    pd.testing.assert_frame_equal(back, spans)
    # A partitioned dataset, through a recursive glob.
    nested = tmp_path / "nested" / "day=1"
    nested.mkdir(parents=True)
    write_parquet(spans, nested / "part-0.parquet")
    pd.testing.assert_frame_equal(
        bayesperf.read_traces(tmp_path / "nested" / "**" / "*.parquet"), spans
    )


def test_overlapping_files_drop_duplicates(tmp_path, spans):
    write_parquet(spans, tmp_path / "a.parquet")
    write_parquet(spans, tmp_path / "b.parquet")
    back = bayesperf.read_traces([tmp_path / "a.parquet", tmp_path / "b.parquet"])
    assert back.attrs["read_report"].dropped["duplicate_span"] == len(spans)
    pd.testing.assert_frame_equal(back, spans)


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "source",
    [
        "nezha-onlineboutique/fault_free",
        "nezha-onlineboutique/fault/*_trace.csv",
        "alibaba-v2022-excerpt/msgraph-excerpt.csv",
    ],
)
def test_real_data_round_trips(shared_data, tmp_path, source):
    spans = bayesperf.read_traces(str(shared_data / source))
    path = tmp_path / "real.parquet"
    write_parquet(spans, path)
    back = bayesperf.read_traces(path)
    pd.testing.assert_frame_equal(back, spans)
    assert back.attrs["read_report"].kept == len(spans)
