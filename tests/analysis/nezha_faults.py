"""The anomaly evaluation on the Online Boutique fault minutes (Nezha).

Run as a script to print precision/recall per minute and overall::

    .venv/bin/python -m tests.analysis.nezha_faults

Which traces are "truly affected" is :mod:`bayesperf.datasets.nezha`'s rule (also used
by the notebook ``notebooks/regression-and-anomalies``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import bayesperf
from bayesperf.analysis import PerformanceAnalyzer
from bayesperf.datasets.nezha import affected_traces, fault_windows


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
