"""The ``span-csv`` reader: column mappings, units, presets (Nezha)."""

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesperf
from bayesperf import TraceFormatError
from bayesperf.io import span_csv
from tests.io.counts import table_counts

NEZHA_HEADER = (
    "TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano,Duration"
)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def nezha(tmp_path):
    return write(
        tmp_path / "2022-08-23_17_00_trace.csv",
        NEZHA_HEADER + "\n"
        "T1,s1,root,frontend-579b9bff58-t2dbm,Recv.,1661273974730641486,1661273975415194516,684553\n"
        "T1,s2,s1,frontend-579b9bff58-t2dbm,Get,1661273974730744351,1661273974737125575,6381\n"
        "T1,s3,s2,redis-cart-74594bd569-2ktnh,Get,1661273974731000000,1661273974732000000,1000\n"
        "T1,s4,gone,cartservice-6b9b8d5f4c-x7k2p,Add,1661273974731000000,1661273974731000500,0\n",
    )


def test_nezha_preset_detected(nezha):
    spans = bayesperf.read_traces(nezha)
    report = spans.attrs["read_report"]
    assert report.format == "span-csv"
    assert (report.records, report.kept) == (4, 4)
    assert report.flagged["parent_missing"] == 1
    # Pod suffixes stripped, hyphenated deployment names kept whole.
    assert spans["service"].tolist() == ["frontend", "frontend", "redis-cart", "cartservice"]
    assert spans["caller"].isna().tolist() == [True, False, False, True]
    assert spans["caller"].tolist()[1:3] == ["frontend", "frontend"]
    # Duration is microseconds.
    assert spans["latency"].tolist() == [684.553, 6.381, 1.0, 0.0]
    assert spans["start_time"].iloc[0].value == 1661273974730641486
    assert pd.isna(spans["parent_id"].iloc[0])  # "root"
    assert spans["operation"].tolist()[0] == "Recv."


def test_nezha_preset_by_name_and_on_a_dataframe(nezha):
    by_name = bayesperf.read_traces(nezha, format="span-csv", preset="nezha")
    frame = pd.read_csv(nezha, dtype=str)
    from_frame = bayesperf.read_traces(frame, format="span-csv", preset="nezha")
    pd.testing.assert_frame_equal(by_name, bayesperf.read_traces(nezha))
    assert from_frame["service"].tolist() == by_name["service"].tolist()
    assert from_frame["latency"].tolist() == by_name["latency"].tolist()


def test_explicit_mapping_and_units(tmp_path):
    path = write(
        tmp_path / "spans.csv",
        "tid,sid,pid,svc,dur_ns\nt,1,-,api,1500000\nt,2,1,db,250000\n",
    )
    spans = bayesperf.read_traces(
        path,
        format="span-csv",
        columns={
            "trace_id": "tid",
            "span_id": "sid",
            "parent_id": "pid",
            "service": "svc",
            "latency": "dur_ns",
        },
        latency_unit="ns",
        root_values=["-"],
    )
    assert spans["latency"].tolist() == [1.5, 0.25]
    assert spans["caller"].tolist()[1] == "api"
    assert pd.isna(spans["parent_id"].iloc[0])
    assert spans.attrs["read_report"].flagged["parent_missing"] == 0


def test_latency_from_start_and_end(tmp_path):
    path = write(tmp_path / "spans.csv", "tid,svc,begin,end\nt,a,1000,4500\nt,b,2000,2000\n")
    spans = bayesperf.read_traces(
        path,
        format="span-csv",
        columns={"trace_id": "tid", "service": "svc", "start_time": "begin", "end_time": "end"},
        time_unit="us",
    )
    assert spans["latency"].tolist() == [3.5, 0.0]
    assert spans["start_time"].iloc[0].value == 1_000_000


def test_strip_service_option(tmp_path):
    path = write(tmp_path / "s.csv", "tid,svc,ms\nt,api@host1,1\nt,api@host2,2\n")
    spans = bayesperf.read_traces(
        path,
        format="span-csv",
        columns={"trace_id": "tid", "service": "svc", "latency": "ms"},
        strip_service="@.*$",
    )
    assert spans["service"].tolist() == ["api", "api"]


def test_non_numeric_duration_names_the_line(nezha):
    text = nezha.read_text().replace(",6381\n", ",6.4ms\n")
    nezha.write_text(text)
    with pytest.raises(TraceFormatError) as err:
        bayesperf.read_traces(nezha)
    msg = str(err.value)
    assert str(nezha) in msg
    assert "line 3" in msg
    assert "Duration" in msg
    assert "'6.4ms'" in msg


def test_unknown_preset(nezha):
    with pytest.raises(TraceFormatError) as err:
        bayesperf.read_traces(nezha, format="span-csv", preset="jaeger-csv")
    assert "unknown span-csv preset 'jaeger-csv'" in str(err.value)
    assert "preset=" in str(err.value)
    assert "nezha" in str(err.value)


def test_no_mapping(tmp_path):
    path = write(tmp_path / "s.csv", "a,b,c\n1,2,3\n")
    with pytest.raises(TraceFormatError) as err:
        bayesperf.read_traces(path, format="span-csv")
    assert str(path) in str(err.value)
    assert "needs a column mapping" in str(err.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"columns": {"trace_id": "a", "service": "b", "latency": "c", "duration": "c"}},
            "unknown canonical column",
        ),
        ({"columns": {"trace_id": "a", "latency": "c"}}, r"lacks \['service'\]"),
        ({"columns": {"trace_id": "a", "service": "b"}}, r"lacks \['latency'\]"),
        (
            {"columns": {"trace_id": "a", "service": "b", "latency": "c"}, "latency_unit": "min"},
            "unknown time unit 'min'",
        ),
    ],
)
def test_bad_column_mapping(tmp_path, options, message):
    path = write(tmp_path / "s.csv", "a,b,c\n1,2,3\n")
    with pytest.raises(TraceFormatError, match=message) as err:
        bayesperf.read_traces(path, format="span-csv", **options)
    assert "columns=" in str(err.value) or "options" in str(err.value)


def test_mapped_required_column_absent_from_file(tmp_path):
    path = write(tmp_path / "s.csv", "a,b,c\n1,2,3\n")
    with pytest.raises(TraceFormatError) as err:
        bayesperf.read_traces(
            path, format="span-csv", columns={"trace_id": "tid", "service": "b", "latency": "c"}
        )
    assert str(path) in str(err.value)
    assert "['tid']" in str(err.value)
    assert "line 1 (header)" in str(err.value)


def test_mapped_duration_absent_from_file(tmp_path):
    path = write(tmp_path / "s.csv", "a,b,c\n1,2,3\n")
    with pytest.raises(TraceFormatError, match=r"missing required column\(s\) \['dur'\]") as err:
        bayesperf.read_traces(
            path, format="span-csv", columns={"trace_id": "a", "service": "b", "latency": "dur"}
        )
    assert str(path) in str(err.value)


def test_mapped_optional_column_absent_from_file(tmp_path):
    path = write(tmp_path / "s.csv", "a,b,c\n1,2,3\n")
    with pytest.raises(TraceFormatError, match="pid"):
        bayesperf.read_traces(
            path,
            format="span-csv",
            columns={"trace_id": "a", "service": "b", "latency": "c", "parent_id": "pid"},
        )


def test_dataframe_missing_mapped_column():
    frame = pd.DataFrame({"a": ["t"], "b": ["s"]})
    with pytest.raises(
        TraceFormatError, match=r"<DataFrame>: columns: missing mapped column\(s\) \['c'\]"
    ):
        bayesperf.read_traces(
            frame, format="span-csv", columns={"trace_id": "a", "service": "b", "latency": "c"}
        )


def test_dataframe_needs_a_mapping():
    frame = pd.DataFrame({"a": ["t"], "b": ["s"]})
    with pytest.raises(TraceFormatError, match="needs a column mapping"):
        bayesperf.read_traces(frame, format="span-csv")


def test_layout_is_validated_directly():
    with pytest.raises(TraceFormatError, match="unknown time unit"):
        span_csv.SpanCsvLayout(
            columns={"trace_id": "a", "service": "b", "latency": "c"}, time_unit="h"
        )


# --- the real Nezha data -----------------------------------------------------------


def nezha_expected(paths: list[Path]) -> dict:
    """Counts the reader should report, computed with the csv module only."""
    rows = []
    for path in paths:
        with open(path, newline="") as fh:
            rows.extend(csv.DictReader(fh))
    seen, kept, dropped = set(), [], Counter()
    for r in rows:
        key = (r["TraceID"], r["SpanID"])
        if key in seen:
            dropped["duplicate_span"] += 1
        else:
            seen.add(key)
            kept.append(r)
    # Pod name = <deployment>-<replicaset hash>-<pod hash>.
    service = {(r["TraceID"], r["SpanID"]): r["PodName"].rsplit("-", 2)[0] for r in kept}
    pairs, parent_missing = set(), 0
    for r in kept:
        if r["ParentID"] == "root":
            continue
        parent = service.get((r["TraceID"], r["ParentID"]))
        if parent is None:
            parent_missing += 1
        else:
            pairs.add((parent, service[(r["TraceID"], r["SpanID"])]))
    return {
        "records": len(rows),
        "kept": len(kept),
        "traces": len({r["TraceID"] for r in kept}),
        "services": len(set(service.values())),
        "pairs": len(pairs),
        "dropped": dict(dropped),
        "parent_missing": parent_missing,
        "roots": sum(r["ParentID"] == "root" for r in kept),
        "latency_us": sum(int(r["Duration"]) for r in kept),
    }


def measured(spans: pd.DataFrame) -> dict:
    return {
        **table_counts(spans),
        "roots": int(spans["parent_id"].isna().sum()),
        "latency_us": round(spans["latency"].sum() * 1000),
    }


@pytest.mark.shared_data
def test_nezha_fault_free(shared_data):
    path = shared_data / "nezha-onlineboutique" / "fault_free" / "2022-08-23_17_00_trace.csv"
    expected = nezha_expected([path])
    spans = bayesperf.read_traces(path)
    assert spans.attrs["read_report"].format == "span-csv"
    assert measured(spans) == expected
    assert expected == {
        "records": 22969,
        "kept": 22969,
        "traces": 502,
        "services": 10,
        "pairs": 20,
        "dropped": {},
        "parent_missing": 0,
        "roots": 502,
        "latency_us": 287036772,
    }
    assert sorted(spans["service"].unique()) == [
        "adservice",
        "cartservice",
        "checkoutservice",
        "currencyservice",
        "emailservice",
        "frontend",
        "paymentservice",
        "productcatalogservice",
        "recommendationservice",
        "shippingservice",
    ]


@pytest.mark.shared_data
def test_nezha_fault_files_together(shared_data):
    folder = shared_data / "nezha-onlineboutique" / "fault"
    paths = sorted(folder.glob("*_trace.csv"))
    assert len(paths) == 8
    expected = nezha_expected(paths)
    # Adjacent minutes repeat spans: an independent count of repeated ids.
    with_pandas = pd.concat(
        [pd.read_csv(p, usecols=["TraceID", "SpanID"], dtype=str) for p in paths]
    )
    assert expected["dropped"]["duplicate_span"] == with_pandas.duplicated().sum()
    spans = bayesperf.read_traces(str(folder / "*_trace.csv"))
    report = spans.attrs["read_report"]
    assert report.sources == [str(p) for p in paths]
    assert measured(spans) == expected
    assert expected == {
        "records": 148168,
        "kept": 147133,
        "traces": 3794,
        "services": 10,
        "pairs": 20,
        "dropped": {"duplicate_span": 1035},
        "parent_missing": 0,
        "roots": 3794,
        "latency_us": 3560247028,
    }


@pytest.mark.shared_data
def test_nezha_export_with_empty_cells_reads_and_counts(shared_data, tmp_path):
    """Issue 13: ~5% empty cells (a truncated export) once raised a bare ValueError."""
    path = shared_data / "nezha-onlineboutique" / "fault_free" / "2022-08-23_17_00_trace.csv"
    frame = pd.read_csv(path, dtype=str)
    holes = np.random.default_rng(5).random(frame.shape) < 0.05
    frame = frame.mask(holes)
    frame.to_csv(tmp_path / "holes.csv", index=False)
    spans = bayesperf.read_traces(tmp_path / "holes.csv")
    report = spans.attrs["read_report"]
    assert report.records == len(frame) == report.kept + sum(report.dropped.values())
    empty = pd.DataFrame(holes, columns=frame.columns)
    # Each emptied cell that makes a row unusable is counted under its own reason, in the
    # builder's order: duration first, then trace id, then service.
    no_latency = empty["Duration"]
    no_trace = empty["TraceID"] & ~no_latency
    no_service = empty["PodName"] & ~no_latency & ~no_trace
    assert report.dropped["missing_latency"] == no_latency.sum()
    assert report.dropped["missing_trace_id"] == no_trace.sum()
    assert report.dropped["missing_service"] == no_service.sum()
    # Missing start times stay missing, not a crash and not invented.
    kept_missing_start = empty["StartTimeUnixNano"] & ~(no_latency | no_trace | no_service)
    assert spans["start_time"].isna().sum() == kept_missing_start.sum()
