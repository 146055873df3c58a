"""The canonical ``csv`` reader, and malformed CSV input in general."""

import gzip
import random
from pathlib import Path

import pandas as pd
import pytest

import bayesperf
from bayesperf import TraceFormatError, TraceReadWarning
from bayesperf.io import canonical_csv
from bayesperf.schema import SPAN_COLUMNS, SPAN_DTYPES


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def read_error(path: Path, **options) -> str:
    with pytest.raises(TraceFormatError) as err:
        bayesperf.read_traces(path, **options)
    assert str(path) in str(err.value), "the message names the file"
    return str(err.value)


def test_flat_table_with_caller(tmp_path):
    path = write(
        tmp_path / "parsed_traces.csv",
        "trace_id,caller,callee,latency\n1,,front,10\n1,front,cart,2.5\n2,,front,8\n",
    )
    spans = bayesperf.read_traces(path)
    report = spans.attrs["read_report"]
    assert report.format == "csv"
    assert (report.records, report.kept) == (3, 3)
    assert spans["service"].tolist() == ["front", "cart", "front"]
    assert spans["callee"].tolist() == ["front", "cart", "front"]
    assert spans["caller"].isna().tolist() == [True, False, True]
    assert spans["span_id"].tolist() == ["0", "1", "0"]  # numbered within each trace
    assert spans["latency"].tolist() == [10.0, 2.5, 8.0]
    assert list(spans.columns) == list(SPAN_COLUMNS)
    assert dict(spans.dtypes.astype(str)) == {c: SPAN_DTYPES[c] for c in SPAN_COLUMNS}
    # One category set for all service columns.
    assert list(spans["caller"].cat.categories) == ["cart", "front"]
    assert list(spans["callee"].cat.categories) == ["cart", "front"]


def test_caller_from_parent_links(tmp_path):
    path = write(
        tmp_path / "t.csv",
        "trace_id,span_id,parent_id,service,latency\n"
        "0012,01,,front,10\n"
        "0012,02,01,cart,3\n"
        "0012,03,99,cart,1\n"  # parent not in the data
        "0013,01,,front,4\n",
    )
    spans = bayesperf.read_traces(path)
    report = spans.attrs["read_report"]
    assert report.flagged["parent_missing"] == 1
    assert spans["trace_id"].tolist()[0] == "0012"  # ids stay text
    assert spans["span_id"].tolist() == ["01", "02", "03", "01"]
    assert spans["caller"].tolist()[1] == "front"
    assert spans["caller"].isna().tolist() == [True, False, True, True]
    assert "kept, flagged: parent_missing 1" in str(report)


def test_unusable_rows_are_dropped_and_counted(tmp_path):
    path = write(
        tmp_path / "t.csv",
        "trace_id,span_id,service,latency\n"
        "t,1,a,1\n"
        "t,2,a,\n"  # missing latency
        "t,3,a,-4\n"  # negative latency
        "t,4,,2\n"  # missing service
        ",5,a,2\n"  # missing trace id
        "t,1,a,9\n"  # duplicate span: first occurrence wins
        "t,6,a,inf\n"  # non-finite
        "t,7,a,0\n",  # zero is a valid latency
    )
    with pytest.warns(TraceReadWarning, match=r"t\.csv: kept only 2 of 8 .* missing_latency"):
        spans = bayesperf.read_traces(path)
    report = spans.attrs["read_report"]
    assert (report.records, report.kept) == (8, 2)
    assert dict(report.dropped) == {
        "missing_latency": 1,
        "negative_latency": 1,
        "missing_service": 1,
        "missing_trace_id": 1,
        "duplicate_span": 1,
        "non_finite_latency": 1,
    }
    assert spans["latency"].tolist() == [1.0, 0.0]
    report.check()


def test_start_time_and_error(tmp_path):
    ns = 1_661_273_974_730_641_486
    ints = write(
        tmp_path / "i.csv", f"trace_id,service,latency,start_time,error\nt,a,1,{ns},1\nt,b,1,0,0\n"
    )
    iso = write(
        tmp_path / "s.csv",
        "trace_id,service,latency,start_time,error\n"
        "t,a,1,2022-08-23T16:59:34.730641486Z,true\n"
        "t,b,1,2022-08-23T18:59:34+02:00,\n",
    )
    a = bayesperf.read_traces(ints)
    assert a["start_time"].iloc[0].value == ns
    assert a["start_time"].iloc[1] == pd.Timestamp(0, tz="UTC")
    assert a["error"].tolist() == [True, False]
    b = bayesperf.read_traces(iso)
    assert b["start_time"].iloc[0].value == ns
    assert b["start_time"].iloc[1] == pd.Timestamp("2022-08-23T16:59:34Z")
    assert b["error"].tolist() == [True, pd.NA]


# An integer column with an empty cell is a missing value, not a parse error (pandas 3.1's
# read_csv(engine="pyarrow", dtype=...) raised "cannot convert NA to integer" here).


def test_missing_integer_latency_cell(tmp_path):
    path = write(tmp_path / "t.csv", "trace_id,service,latency\nt,a,1\nt,b,\n")
    report = bayesperf.read_traces(path).attrs["read_report"]
    assert dict(report.dropped) == {"missing_latency": 1}


def test_missing_decimal_latency_cell(tmp_path):
    path = write(tmp_path / "t.csv", "trace_id,service,latency\nt,a,1.5\nt,b,\n")
    report = bayesperf.read_traces(path).attrs["read_report"]
    assert dict(report.dropped) == {"missing_latency": 1}


def test_integer_start_time_with_missing_cell(tmp_path):
    ns = 1_661_273_974_730_641_486
    path = write(tmp_path / "i.csv", f"trace_id,service,latency,start_time\nt,a,1,{ns}\nt,b,1,\n")
    spans = bayesperf.read_traces(path)
    assert spans["start_time"].iloc[0].value == ns
    assert pd.isna(spans["start_time"].iloc[1])


def test_gzip(tmp_path):
    text = "trace_id,service,latency\nt,a,1\n"
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    assert bayesperf.read_traces(path)["service"].tolist() == ["a"]


def test_dataframe_input():
    frame = pd.DataFrame({"trace_id": [1, 1], "callee": ["a", "b"], "latency": [1, 2]})
    spans = bayesperf.read_traces(frame)
    assert spans["trace_id"].tolist() == ["1", "1"]
    assert spans["service"].tolist() == ["a", "b"]
    assert spans.attrs["read_report"].sources == ["<DataFrame>"]


def test_dataframe_errors_name_the_row():
    frame = pd.DataFrame({"trace_id": ["t", "t"], "service": ["a", "b"], "latency": ["1", "x"]})
    with pytest.raises(TraceFormatError, match=r"<DataFrame>: row 1: latency value 'x'"):
        bayesperf.read_traces(frame)
    with pytest.raises(TraceFormatError, match=r"missing required column\(s\) \['latency'\]"):
        bayesperf.read_traces(frame.drop(columns="latency"))


def test_sniff(tmp_path):
    sniff = canonical_csv.FORMAT.sniff
    good = write(tmp_path / "a.csv", "latency,callee,trace_id\n")
    assert sniff(good, good.read_bytes())
    assert not sniff(write(tmp_path / "b.csv", "trace_id,callee\n"), b"")
    assert not sniff(write(tmp_path / "c.txt", "trace_id,callee,latency\n"), b"")


# --- malformed input -------------------------------------------------------------


def test_missing_required_columns(tmp_path):
    path = write(tmp_path / "t.csv", "trace_id,service,duration\nt,a,1\n")
    msg = read_error(path, format="csv")
    assert "line 1 (header)" in msg
    assert "['latency']" in msg
    # Auto-detection cannot recognise it at all, and says so naming the file.
    assert "could not recognise" in read_error(path)


def test_non_numeric_latency_names_the_line(tmp_path):
    path = write(tmp_path / "t.csv", "trace_id,service,latency\nt,a,1\nt,b,2\nt,c,12ms\n")
    msg = read_error(path)
    assert "line 4" in msg
    assert "'12ms'" in msg
    assert "latency" in msg


def test_bad_start_time_names_the_line(tmp_path):
    path = write(
        tmp_path / "t.csv", "trace_id,service,latency,start_time\nt,a,1,2022-01-01\nt,b,2,noon\n"
    )
    msg = read_error(path)
    assert "line 3" in msg
    assert "'noon'" in msg


def test_bad_error_flag_names_the_line(tmp_path):
    path = write(tmp_path / "t.csv", "trace_id,service,latency,error\nt,a,1,true\nt,b,2,maybe\n")
    msg = read_error(path)
    assert "line 3" in msg
    assert "'maybe'" in msg


def test_ragged_row(tmp_path):
    path = write(tmp_path / "t.csv", "trace_id,service,latency\nt,a,1\nt,b,2,extra\nt,c,3\n")
    msg = read_error(path)
    assert "cannot parse CSV" in msg
    assert "t,b,2,extra" in msg  # the row's text


def test_ragged_row_names_the_line(tmp_path):
    path = write(tmp_path / "t.csv", "trace_id,service,latency\nt,a,1\nt,b,2,extra\nt,c,3\n")
    assert "line 3" in read_error(path)


def test_line_numbers_count_blank_lines(tmp_path):
    path = write(tmp_path / "t.csv", "trace_id,service,latency\nt,a,1\n\nt,b,x\n")
    assert "line 4" in read_error(path)


def test_empty_file(tmp_path):
    path = write(tmp_path / "t.csv", "")
    assert "file is empty" in read_error(path)
    assert "file is empty" in read_error(path, format="csv")


def test_blank_file(tmp_path):
    path = write(tmp_path / "t.csv", "\n\n  \n")
    assert "file is empty" in read_error(path)


def test_header_only_file_is_empty_input(tmp_path):
    path = write(tmp_path / "t.csv", "trace_id,service,latency\n")
    msg = read_error(path)
    assert "no span" in msg


def test_header_only_file_among_others_is_fine(tmp_path):
    empty = write(tmp_path / "a.csv", "trace_id,service,latency\n")
    full = write(tmp_path / "b.csv", "trace_id,service,latency\nt,a,1\n")
    report = bayesperf.read_traces([empty, full]).attrs["read_report"]
    assert (report.records, report.kept) == (1, 1)


def test_truncated_gzip(tmp_path):
    # Truncated after the first 64 KiB (what format detection reads): pandas fails.
    rng = random.Random(0)
    rows = "".join(f"{i // 10},s{i % 7},{rng.random() * 100:.4f}\n" for i in range(60_000))
    data = gzip.compress(("trace_id,service,latency\n" + rows).encode())
    path = tmp_path / "t.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    msg = read_error(path)
    assert "cannot parse CSV" in msg
    assert "Truncated compressed stream" in msg


@pytest.mark.parametrize("format", ["auto", "csv"])
def test_truncated_gzip_short(tmp_path, format):
    data = gzip.compress(b"trace_id,service,latency\n" + b"t,a,1\n" * 2000)
    path = tmp_path / "t.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    read_error(path, format=format)


def test_not_gzip(tmp_path):
    path = write(tmp_path / "t.csv.gz", "trace_id,service,latency\nt,a,1\n")
    read_error(path)
