"""``read_traces``: sources, format choice, and the ReadReport."""

from pathlib import Path

import pandas as pd
import pytest

import bayesperf
from bayesperf import ReadReport, TraceFormatError
from bayesperf.io import FORMATS
from bayesperf.schema import SPAN_COLUMNS

CSV_HEADER = "trace_id,span_id,parent_id,service,latency\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def folder(tmp_path):
    """Two canonical CSV files that share one span, and a file that is not traces."""
    write(tmp_path / "traces" / "a.csv", CSV_HEADER + "t1,1,,front,10\nt1,2,1,cart,2\n")
    write(
        tmp_path / "traces" / "b.csv", CSV_HEADER + "t1,2,1,cart,2\nt2,1,,front,-1\nt2,2,1,cart,3\n"
    )
    write(tmp_path / "traces" / "notes.txt", "not traces")
    return tmp_path / "traces"


def kept(spans):
    return spans.attrs["read_report"].kept


def test_registered_formats():
    assert {"csv", "span-csv", "jaeger", "zipkin", "otlp", "alibaba", "parquet"} <= set(FORMATS)


def test_single_path_str_and_pathlike(folder):
    as_str = bayesperf.read_traces(str(folder / "a.csv"))
    as_path = bayesperf.read_traces(folder / "a.csv")
    pd.testing.assert_frame_equal(as_str, as_path)
    assert list(as_path.columns) == list(SPAN_COLUMNS)
    assert as_path.attrs["read_report"].sources == [str(folder / "a.csv")]


def test_glob(folder):
    spans = bayesperf.read_traces(str(folder / "*.csv"))
    report = spans.attrs["read_report"]
    assert report.sources == [str(folder / "a.csv"), str(folder / "b.csv")]
    assert (report.records, report.kept) == (5, 3)
    assert dict(report.dropped) == {"duplicate_span": 1, "negative_latency": 1}


def test_directory_skips_non_trace_files(folder):
    spans = bayesperf.read_traces(folder)
    assert spans.attrs["read_report"].sources == [str(folder / "a.csv"), str(folder / "b.csv")]
    pd.testing.assert_frame_equal(spans, bayesperf.read_traces(str(folder / "*.csv")))


def test_list_of_sources_keeps_order(folder):
    spans = bayesperf.read_traces([folder / "b.csv", str(folder / "a.csv")])
    report = spans.attrs["read_report"]
    assert report.sources == [str(folder / "b.csv"), str(folder / "a.csv")]
    # Spans repeated across files are dropped whichever file comes first.
    assert report.dropped["duplicate_span"] == 1
    assert spans["trace_id"].tolist() == ["t1", "t2", "t1"]
    assert kept(spans) == 3


def test_recursive_glob(tmp_path):
    write(tmp_path / "x" / "day1" / "a.csv", CSV_HEADER + "t1,1,,front,1\n")
    write(tmp_path / "x" / "day2" / "b.csv", CSV_HEADER + "t2,1,,front,1\n")
    assert kept(bayesperf.read_traces(str(tmp_path / "x" / "**" / "*.csv"))) == 2


def test_dataframe(folder):
    frame = pd.read_csv(folder / "a.csv", dtype=str)
    spans = bayesperf.read_traces(frame)
    assert spans.attrs["read_report"].format == "csv"
    assert spans.attrs["read_report"].sources == ["<DataFrame>"]
    pd.testing.assert_frame_equal(spans, bayesperf.read_traces(folder / "a.csv"))


def test_explicit_format(folder):
    spans = bayesperf.read_traces(folder / "a.csv", format="csv")
    assert spans.attrs["read_report"].format == "csv"


def test_unknown_format_name(folder):
    with pytest.raises(TraceFormatError) as err:
        bayesperf.read_traces(folder / "a.csv", format="xml")
    msg = str(err.value)
    assert "unknown trace format 'xml'" in msg
    for name in FORMATS:
        assert name in msg


def test_unknown_format_name_with_dataframe():
    frame = pd.DataFrame({"trace_id": ["t"], "service": ["a"], "latency": [1.0]})
    with pytest.raises(TraceFormatError, match="unknown trace format 'xml'"):
        bayesperf.read_traces(frame, format="xml")


def test_mixed_formats_in_one_call(tmp_path, folder):
    alibaba = write(tmp_path / "calls.csv", "traceid,rpcid,um,dm,rt\nT,0,USER,a,1\n")
    with pytest.raises(TraceFormatError) as err:
        bayesperf.read_traces([folder / "a.csv", alibaba])
    msg = str(err.value)
    assert "different formats" in msg
    assert "a.csv: csv" in msg
    assert "calls.csv: alibaba" in msg


def test_unrecognised_file(tmp_path):
    path = write(tmp_path / "x.csv", "when,what\n1,2\n")
    with pytest.raises(TraceFormatError) as err:
        bayesperf.read_traces(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "could not recognise the trace format" in msg
    assert "format=" in msg


def test_empty_glob(tmp_path):
    with pytest.raises(TraceFormatError) as err:
        bayesperf.read_traces(str(tmp_path / "*.csv"))
    assert "glob matches no file" in str(err.value)
    assert str(tmp_path / "*.csv") in str(err.value)


@pytest.mark.parametrize("format", ["auto", "csv"])
def test_glob_matching_only_directories(tmp_path, format):
    (tmp_path / "sub").mkdir()
    with pytest.raises(TraceFormatError):
        bayesperf.read_traces(str(tmp_path / "*"), format=format)


def test_nonexistent_path(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(TraceFormatError) as err:
        bayesperf.read_traces(missing)
    assert "no such file or directory" in str(err.value)
    assert str(missing) in str(err.value)


def test_empty_list():
    with pytest.raises(TraceFormatError, match="no sources given"):
        bayesperf.read_traces([])


def test_directory_without_trace_files(tmp_path):
    write(tmp_path / "readme.txt", "hello")
    with pytest.raises(TraceFormatError, match="directory holds no trace files"):
        bayesperf.read_traces(tmp_path)


def test_empty_file(tmp_path):
    path = write(tmp_path / "x.csv", "")
    with pytest.raises(TraceFormatError, match="file is empty") as err:
        bayesperf.read_traces(path)
    assert str(path) in str(err.value)


def test_no_records_at_all(tmp_path):
    write(tmp_path / "a.csv", CSV_HEADER)
    write(tmp_path / "b.csv", CSV_HEADER)
    with pytest.raises(TraceFormatError, match="no span"):
        bayesperf.read_traces(tmp_path)


def test_report_printing_and_invariant(folder):
    report = bayesperf.read_traces(folder).attrs["read_report"]
    assert isinstance(report, ReadReport)
    report.check()
    assert report.records == report.kept + sum(report.dropped.values())
    text = str(report)
    lines = text.splitlines()
    assert lines[0] == "ReadReport (csv, 2 sources)"
    assert lines[1].split() == ["records", "seen", "5"]
    assert lines[2].split() == ["kept", "3"]
    assert lines[3].split() == ["dropped:", "duplicate_span", "1"]
    assert lines[4].split() == ["dropped:", "negative_latency", "1"]
    assert len({line.rfind(" ") for line in lines[1:]}) == 1  # values in one column
    assert report.rows()[0] == ("records seen", 5)
    assert "<table>" in report._repr_html_()


def test_report_check_detects_bad_counts():
    report = ReadReport(format="csv", records=3, kept=1)
    report.dropped["negative_latency"] = 1
    with pytest.raises(AssertionError, match="does not add up"):
        report.check()


def test_report_merge():
    a = ReadReport(format="csv", sources=["a"], records=3, kept=2)
    a.dropped["negative_latency"] = 1
    b = ReadReport(format="parquet", sources=["b"], records=4, kept=4)
    b.flagged["parent_missing"] = 2
    both = a.merge(b)
    both.check()
    assert both.format == "csv+parquet"
    assert both.sources == ["a", "b"]
    assert (both.records, both.kept) == (7, 6)
    assert both.flagged["parent_missing"] == 2


def test_report_single_source_wording(folder):
    text = str(bayesperf.read_traces(folder / "a.csv").attrs["read_report"])
    assert text.splitlines()[0] == "ReadReport (csv, 1 source)"
