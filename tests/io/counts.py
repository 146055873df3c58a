"""The counts every reader test compares with an independent count of the raw file."""

import pandas as pd


def table_counts(spans: pd.DataFrame) -> dict:
    """Records, kept rows, traces, services, caller→callee pairs, drops and flags."""
    report = spans.attrs["read_report"]
    report.check()
    pairs = spans.dropna(subset=["caller"])[["caller", "callee"]].astype(str).drop_duplicates()
    return {
        "records": report.records,
        "kept": report.kept,
        "traces": spans["trace_id"].nunique(),
        "services": spans["service"].nunique(),
        "pairs": len(pairs),
        "dropped": {k: v for k, v in report.dropped.items() if v},
        "parent_missing": report.flagged["parent_missing"],
    }
