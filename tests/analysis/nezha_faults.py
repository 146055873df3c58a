"""Ground truth for the Online Boutique fault minutes (Nezha), and the anomaly evaluation.

Run as a script to print precision/recall per minute and overall::

    .venv/bin/python -m tests.analysis.nezha_faults

Which traces are "truly affected"
    The injection list gives, per fault, the injection time and the pod (service =
    pod name without its ``-<replicaset>-<pod>`` suffix); it gives no end time. The
    traces show each fault's effect from the injection to the end of its recorded
    episode (85–132 s later) and gone by the next episode's first minute, 8 minutes
    later; we take a fault to be active for ``[injection, injection + 3 min)``. A trace
    is affected when it has a span of the injected service and its time span
    ``[first start, last end]`` overlaps that window. In the three episodes recorded
    here the injected pod is the frontend, which every trace passes through, so
    "affected" means "in flight after the injection"; the minute before each injection
    is the negative class.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

import bayesperf
from bayesperf.analysis import PerformanceAnalyzer

FAULT_DURATION = pd.Timedelta("3min")


def fault_windows(fault_list: Path, duration: pd.Timedelta = FAULT_DURATION) -> pd.DataFrame:
    """One row per injected fault: ``service``, ``pod``, ``kind``, ``start``, ``end`` (UTC)."""
    spec = json.loads(Path(fault_list).read_text())
    rows = []
    for faults in spec.values():
        for f in faults:
            start = pd.Timestamp(int(f["inject_timestamp"]), unit="s", tz="UTC")
            rows.append(
                {
                    "service": f["inject_pod"].rsplit("-", 2)[0],
                    "pod": f["inject_pod"],
                    "kind": f["inject_type"],
                    "start": start,
                    "end": start + duration,
                }
            )
    return pd.DataFrame(rows).sort_values("start", ignore_index=True)


def affected_traces(spans: pd.DataFrame, windows: pd.DataFrame) -> pd.Series:
    """Per trace: whether it touches an injected service while that fault is active."""
    end = spans["start_time"] + pd.to_timedelta(spans["latency"], unit="ms")
    span_times = spans.assign(_end=end).groupby("trace_id")
    first, last = span_times["start_time"].min(), span_times["_end"].max()
    label = pd.Series(False, index=first.index)
    services = spans["service"].astype("str")
    for w in windows.itertuples():
        touched = first.index.isin(spans.loc[services == w.service, "trace_id"].unique())
        label |= touched & (last >= w.start).to_numpy() & (first < w.end).to_numpy()
    return label


def evaluate(
    analyzer: PerformanceAnalyzer,
    baseline,
    minutes: list[Path],
    windows: pd.DataFrame,
    **detect_options,
) -> pd.DataFrame:
    """Score each minute against the baseline; per-minute confusion counts and totals."""
    rows = []
    for path in minutes:
        spans = bayesperf.read_traces(path)
        result = analyzer.detect_anomalies(
            spans, baseline=baseline, flagged_only=False, **detect_options
        )
        truth = affected_traces(spans, windows).reindex(result["trace_id"]).to_numpy()
        flagged = result["flagged"].to_numpy()
        rows.append(
            {
                "minute": path.stem.removesuffix("_trace"),
                "traces": len(result),
                "affected": int(truth.sum()),
                "flagged": int(flagged.sum()),
                "tp": int((flagged & truth).sum()),
                "fp": int((flagged & ~truth).sum()),
                "fn": int((~flagged & truth).sum()),
            }
        )
    table = pd.DataFrame(rows).set_index("minute")
    table.loc["total"] = table.sum()
    table["precision"] = table["tp"] / table["flagged"].where(table["flagged"] > 0)
    table["recall"] = table["tp"] / table["affected"].where(table["affected"] > 0)
    return table


def main() -> None:  # pragma: no cover - a report, run by hand
    """Print the evaluation for the default settings and the alternatives."""
    import time
    import warnings

    from tests.conftest import SHARED_DATA

    ob = SHARED_DATA / "nezha-onlineboutique"
    windows = fault_windows(ob / "fault" / "2022-08-22-fault_list.json")
    minutes = sorted((ob / "fault").glob("*_trace.csv"))
    normal = bayesperf.read_traces(ob / "fault_free" / "2022-08-23_17_00_trace.csv")
    pd.set_option("display.width", 200)
    warnings.simplefilter("ignore")  # short chains: convergence warnings are expected
    pair = PerformanceAnalyzer(chains=2, draws=500, tune=500, progressbar=False)
    operation = PerformanceAnalyzer(
        by=("caller", "callee", "operation"), chains=2, draws=500, tune=500, progressbar=False
    )
    configs = {
        "by pair (default)": (pair, {}),
        "by pair, tail=both": (pair, {"tail": "both"}),
        "by pair, predictive=model": (pair, {"predictive": "model"}),
        "by operation": (operation, {}),
        "by operation, tail=both": (operation, {"tail": "both"}),
    }
    for name, (analyzer, options) in configs.items():
        t0 = time.perf_counter()
        table = evaluate(analyzer, normal, minutes, windows, **options)
        self_flags = analyzer.detect_anomalies(normal, **options)
        print(f"\n== {name}  ({time.perf_counter() - t0:.1f} s, fits included)")
        print(table.round(3))
        print(f"fault-free minute scored against itself: {len(self_flags)} of 502 traces flagged")


if __name__ == "__main__":  # pragma: no cover
    main()
