"""The ``alibaba`` reader: Alibaba microservice call-graph CSV (2021 / 2022 releases)."""

import csv
import gzip
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

import bayesperf
from bayesperf import TraceFormatError
from bayesperf.io import alibaba
from tests.io.counts import table_counts

HEADER_2022 = "timestamp,traceid,service,rpcid,rpctype,um,uminstanceid,interface,dm,dminstanceid,rt"


def write(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def row(ts, trace, rpcid, um, interface, dm, rt, service="S_1", rpctype="rpc"):
    return (
        f"{ts},{trace},{service},{rpcid},{rpctype},{um},{um}_POD_0,{interface},{dm},{dm}_POD_0,{rt}"
    )


@pytest.fixture
def small(tmp_path):
    """One call graph with every case the reader must handle."""
    return write(
        tmp_path / "calls.csv",
        HEADER_2022,
        [
            row(1500, "T_1", "0", "USER", "entry", "MS_A", 12.0),  # line 2: root call
            row(1501, "T_1", "0.1", "MS_A", "get", "MS_B", 0.0),  # 3: sub-ms call, kept as 0
            row(1502, "T_1", "0.1.1", "MS_B", "q", "UNKNOWN", 3.0),  # 4: callee not recorded
            row(1503, "T_1", "0.2", "UNAVAILABLE", "put", "MS_C", 4.0),  # 5: caller not recorded
            row(1504, "T_1", "0.2", "MS_A", "put", "MS_C", 5.0),  # 6: same call, other side
            row(1505, "T_1", "0.3", "MS_A", "del", "MS_D", -2.0),  # 7: negative rt
            row(1506, "T_2", "0", "USER", "entry", "USER", 7.0),  # 8: USER as callee
            row(1507, "T_2", "0.1", "", "", "MS_B", 1.0),  # 9: empty caller and interface
        ],
    )


def test_auto_detected_and_mapped(small):
    spans = bayesperf.read_traces(small)
    report = spans.attrs["read_report"]
    assert report.format == "alibaba"
    assert report.records == 8
    assert report.kept == 4
    assert dict(report.dropped) == {
        "missing_service": 2,  # UNKNOWN and USER callees
        "negative_latency": 1,
        "duplicate_span": 1,  # (T_1, 0.2) logged twice
    }
    # caller comes from um, not parent links; kept calls with an unrecorded um are flagged
    assert dict(report.flagged) == {"placeholder_caller": 2}
    report.check()

    by_id = spans.set_index(["trace_id", "span_id"])
    root = by_id.loc[("T_1", "0")]
    assert root["caller"] == "USER"
    assert root["service"] == root["callee"] == "MS_A"
    assert root["operation"] == "entry"
    assert root["latency"] == 12.0
    assert pd.isna(root["parent_id"])
    assert pd.isna(root["error"])

    sub_ms = by_id.loc[("T_1", "0.1")]
    assert sub_ms["latency"] == 0.0
    assert sub_ms["parent_id"] == "0"
    assert sub_ms["caller"] == "MS_A"


def test_duplicate_rpcid_first_occurrence_wins(small):
    spans = bayesperf.read_traces(small)
    call = spans[(spans.trace_id == "T_1") & (spans.span_id == "0.2")]
    assert len(call) == 1
    # The first record (caller side unknown, rt 4) wins over the second (rt 5).
    assert call["latency"].item() == 4.0
    assert pd.isna(call["caller"].item())
    assert call["callee"].item() == "MS_C"


def test_placeholders_and_empty_names_are_missing(small):
    spans = bayesperf.read_traces(small)
    assert not spans["caller"].isin(["UNKNOWN", "UNAVAILABLE", ""]).any()
    assert not spans["service"].isin(["UNKNOWN", "UNAVAILABLE", "USER", ""]).any()
    late = spans[(spans.trace_id == "T_2") & (spans.span_id == "0.1")]
    assert pd.isna(late["caller"].item())
    assert pd.isna(late["operation"].item())
    # T_2's root (USER -> USER) was dropped; its child keeps its parent id.
    assert late["parent_id"].item() == "0"


def test_start_time_is_relative_ms(small):
    spans = bayesperf.read_traces(small)
    root = spans[(spans.trace_id == "T_1") & (spans.span_id == "0")]
    # timestamp 1500 ms after the dataset start, stored after the Unix epoch.
    assert root["start_time"].item() == pd.Timestamp("1970-01-01 00:00:01.500", tz="UTC")
    assert str(spans["start_time"].dtype) == "datetime64[ns, UTC]"


def test_parent_rpcid():
    ids = pd.Series(["0", "0.1", "0.1.2", "0.5.1.3362113141.17", None], dtype="str")
    parents = alibaba.parent_rpcid(ids)
    assert parents.iloc[1:4].tolist() == ["0", "0.1", "0.5.1.3362113141"]
    assert parents.iloc[[0, 4]].isna().all()


def test_2021_layout_with_index_column_and_aliases(tmp_path):
    # 2021 order, an unnamed leading index column, alternative spellings, upper case.
    path = write(
        tmp_path / "MSCallGraph_0.csv",
        ",trace_id,timestamp,rpc_id,UM,rpctype,DM,interface,RT",
        [
            "0,t1,100,0,USER,http,ms_a,i1,5",
            "1,t1,101,0.1,ms_a,rpc,ms_b,i2,3",
            "2,t1,102,0.1,ms_a,rpc,ms_b,i2,-2",  # callee side of the same call (2021)
            "3,t1,103,0.1.1,ms_b,db,UNKNOWN,,1",
        ],
    )
    spans = bayesperf.read_traces(path)
    report = spans.attrs["read_report"]
    assert report.format == "alibaba"
    assert (report.records, report.kept) == (4, 2)
    assert dict(report.dropped) == {"negative_latency": 1, "missing_service": 1}
    assert spans["span_id"].tolist() == ["0", "0.1"]
    assert spans["caller"].tolist() == ["USER", "ms_a"]
    assert spans["callee"].tolist() == ["ms_a", "ms_b"]
    assert spans["latency"].tolist() == [5.0, 3.0]
    # Integer rt and ids that look like numbers stay exact.
    assert spans["trace_id"].tolist() == ["t1", "t1"]


def test_without_optional_columns(tmp_path):
    path = write(tmp_path / "min.csv", "traceid,rpcid,um,dm,rt", ["t,0,USER,a,1.5", "t,0.1,a,b,2"])
    spans = bayesperf.read_traces(path)
    assert spans["latency"].tolist() == [1.5, 2.0]
    assert spans["start_time"].isna().all()
    assert spans["operation"].isna().all()


def test_ids_that_look_numeric_stay_text(tmp_path):
    path = write(
        tmp_path / "ids.csv", "traceid,rpcid,um,dm,rt", ["0012,0,USER,a,1", "0012,0.10,a,b,2"]
    )
    spans = bayesperf.read_traces(path)
    assert spans["trace_id"].tolist() == ["0012", "0012"]
    assert spans["span_id"].tolist() == ["0", "0.10"]
    assert spans["parent_id"].tolist()[1] == "0"


def test_gzip(tmp_path, small):
    path = tmp_path / "calls.csv.gz"
    path.write_bytes(gzip.compress(small.read_bytes()))
    pd.testing.assert_frame_equal(bayesperf.read_traces(path), bayesperf.read_traces(small))


def test_explicit_format_name(small):
    spans = bayesperf.read_traces(small, format="alibaba")
    assert spans.attrs["read_report"].kept == 4


def test_sniff_needs_the_call_graph_columns(tmp_path):
    path = write(tmp_path / "x.csv", "traceid,rpcid,um,rt", ["t,0,USER,1"])
    assert not alibaba.FORMAT.sniff(path, path.read_bytes())
    with pytest.raises(TraceFormatError, match="could not recognise"):
        bayesperf.read_traces(path)


def test_missing_required_column(tmp_path):
    path = write(tmp_path / "x.csv", "traceid,rpcid,um,rt", ["t,0,USER,1"])
    with pytest.raises(TraceFormatError) as err:
        bayesperf.read_traces(path, format="alibaba")
    msg = str(err.value)
    assert str(path) in msg
    assert "'dm'" in msg
    assert "line 1 (header)" in msg


def test_non_numeric_rt_names_the_line(tmp_path):
    path = write(tmp_path / "x.csv", "traceid,rpcid,um,dm,rt", ["t,0,USER,a,1", "t,0.1,a,b,slow"])
    with pytest.raises(TraceFormatError) as err:
        bayesperf.read_traces(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "line 3" in msg
    assert "'slow'" in msg


def test_non_numeric_timestamp_names_the_line(tmp_path):
    path = write(
        tmp_path / "x.csv",
        "timestamp,traceid,rpcid,um,dm,rt",
        ["5,t,0,USER,a,1", "6,t,0.1,a,b,1", "soon,t,0.2,a,c,1"],
    )
    with pytest.raises(TraceFormatError) as err:
        bayesperf.read_traces(path)
    assert str(path) in str(err.value)
    assert "line 4" in str(err.value)
    assert "timestamp" in str(err.value)


def test_fractional_timestamp(tmp_path):
    path = write(tmp_path / "x.csv", "timestamp,traceid,rpcid,um,dm,rt", ["1.25,t,0,USER,a,1"])
    spans = bayesperf.read_traces(path)
    assert spans["start_time"].item() == pd.Timestamp(1_250_000, unit="ns", tz="UTC")


def test_placeholder_callers_are_counted(small):
    spans = bayesperf.read_traces(small)
    report = spans.attrs["read_report"]
    # Rows kept with caller missing because um was UNAVAILABLE / empty.
    assert report.flagged["placeholder_caller"] == 2


# --- the real excerpt -------------------------------------------------------------

PLACEHOLDERS = {"UNKNOWN", "UNAVAILABLE", ""}


def alibaba_expected(path: Path) -> dict:
    """Counts the reader should report, computed with the csv module only."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    dropped, seen, kept = Counter(), set(), []
    for r in rows:  # same order of checks as the table builder
        if float(r["rt"]) < 0:
            dropped["negative_latency"] += 1
        elif r["dm"] in PLACEHOLDERS or r["dm"] == "USER":
            dropped["missing_service"] += 1
        elif (r["traceid"], r["rpcid"]) in seen:
            dropped["duplicate_span"] += 1
        else:
            seen.add((r["traceid"], r["rpcid"]))
            kept.append(r)
    return {
        "records": len(rows),
        "kept": len(kept),
        "traces": len({r["traceid"] for r in kept}),
        "services": len({r["dm"] for r in kept}),
        "pairs": len({(r["um"], r["dm"]) for r in kept if r["um"] not in PLACEHOLDERS}),
        "dropped": dict(dropped),
        "parent_missing": 0,  # caller is um, never derived from parent links
        "caller_missing": sum(r["um"] in PLACEHOLDERS for r in kept),
        "zero_rt": sum(float(r["rt"]) == 0 for r in kept),
        "latency_sum": sum(float(r["rt"]) for r in kept),
        "roots": sum(r["rpcid"] == "0" for r in kept),
    }


def measured(spans: pd.DataFrame) -> dict:
    return {
        **table_counts(spans),
        "caller_missing": int(spans["caller"].isna().sum()),
        "zero_rt": int((spans["latency"] == 0).sum()),
        "latency_sum": spans["latency"].sum(),
        "roots": int(spans["parent_id"].isna().sum()),
    }


@pytest.mark.shared_data
def test_v2022_excerpt(shared_data):
    path = shared_data / "alibaba-v2022-excerpt" / "msgraph-excerpt.csv"
    expected = alibaba_expected(path)
    spans = bayesperf.read_traces(path)
    assert spans.attrs["read_report"].format == "alibaba"
    got = measured(spans)
    assert got.pop("latency_sum") == pytest.approx(expected.pop("latency_sum"))
    assert got == expected
    # The numbers, pinned (the excerpt: 2,787 rows, rt != 0, rpctype rpc only).
    assert expected == {
        "records": 2787,
        "kept": 2550,
        "traces": 1385,
        "services": 643,
        "pairs": 843,
        "dropped": {"missing_service": 237},  # 218 UNKNOWN + 19 USER callees
        "parent_missing": 0,
        "caller_missing": 225,  # um UNAVAILABLE
        "zero_rt": 0,
        "roots": 50,  # 69 USER root calls less the 19 USER -> USER ones
    }


def test_missing_rt_decimal(tmp_path):
    # 2022 files write rt as "2.0": a gap is a missing latency, dropped and counted.
    path = write(
        tmp_path / "x.csv",
        "timestamp,traceid,rpcid,um,dm,rt",
        ["5,t,0,USER,a,1.0", "6,t,0.1,a,b,2.0", "7,t,0.2,a,c,"],
    )
    spans = bayesperf.read_traces(path)
    assert dict(spans.attrs["read_report"].dropped) == {"missing_latency": 1}
    assert spans["start_time"].iloc[0] == pd.Timestamp(5_000_000, unit="ns", tz="UTC")


def test_missing_timestamp_and_integer_rt(tmp_path):
    # 2021 files write rt as an integer.
    path = write(
        tmp_path / "x.csv",
        "timestamp,traceid,rpcid,um,dm,rt",
        ["5,t,0,USER,a,1", ",t,0.1,a,b,2", "7,t,0.2,a,c,"],
    )
    spans = bayesperf.read_traces(path)
    assert dict(spans.attrs["read_report"].dropped) == {"missing_latency": 1}
    assert spans["start_time"].isna().tolist() == [False, True]
