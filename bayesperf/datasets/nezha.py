"""Ground truth of the Nezha Online Boutique fault minutes: which traces a fault touched.

The Nezha dataset (``../shared/data/nezha-onlineboutique``, not bundled) records minutes
of Google Online Boutique with faults injected, and a fault list giving, per fault, the
injection time and the pod, but no end time. The traces show each fault's effect from
the injection to the end of its recorded episode (85–132 s later), gone by the next
episode's first minute 8 minutes later; so a fault is taken to be active for
``[injection, injection + 3 min)`` (:data:`FAULT_DURATION`). A trace is *affected* when
it has a span of the injected service and its time span ``[first start, last end]``
overlaps that window. In the three episodes recorded there the injected pod is the
frontend, which every trace passes through, so "affected" means "in flight after the
injection", and the minute before each injection is the negative class.

One rule, used by the anomaly evaluation in ``tests/analysis`` and by the notebook
``notebooks/regression-and-anomalies``.

Examples
--------
>>> import pandas as pd
>>> windows = pd.DataFrame({
...     "service": ["frontend"],
...     "start": [pd.Timestamp("2022-08-22 03:55", tz="UTC")],
...     "end": [pd.Timestamp("2022-08-22 03:58", tz="UTC")],
... })
>>> spans = pd.DataFrame({
...     "trace_id": ["before", "during", "during", "other"],
...     "service": ["frontend", "frontend", "cart", "cart"],
...     "start_time": pd.to_datetime(
...         ["2022-08-22 03:54", "2022-08-22 03:56", "2022-08-22 03:56", "2022-08-22 03:56"],
...         utc=True,
...     ),
...     "latency": [10.0, 10.0, 5.0, 5.0],
... })
>>> affected_traces(spans, windows).to_dict()
{'before': False, 'during': True, 'other': False}
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

__all__ = ["FAULT_DURATION", "affected_traces", "fault_windows", "trace_times"]

#: How long a fault counts as active after its injection (the fault list has no end).
FAULT_DURATION = pd.Timedelta("3min")


def fault_windows(
    fault_list: str | os.PathLike[str], duration: pd.Timedelta = FAULT_DURATION
) -> pd.DataFrame:
    """One row per injected fault: ``service``, ``pod``, ``kind``, ``start``, ``end`` (UTC).

    Parameters
    ----------
    fault_list : path
        A Nezha fault list (``<date>-fault_list.json``): per group, a list of faults
        with ``inject_timestamp`` (Unix seconds), ``inject_pod`` and ``inject_type``.
    duration : pandas.Timedelta, default 3 min
        How long after its injection a fault counts as active.

    Returns
    -------
    pandas.DataFrame
        Sorted by ``start``; ``service`` is the pod name without its
        ``-<replicaset>-<pod>`` suffix.
    """
    spec = json.loads(Path(fault_list).read_text())
    rows = []
    for faults in spec.values():
        for fault in faults:
            start = pd.Timestamp(int(fault["inject_timestamp"]), unit="s", tz="UTC")
            rows.append(
                {
                    "service": fault["inject_pod"].rsplit("-", 2)[0],
                    "pod": fault["inject_pod"],
                    "kind": fault["inject_type"],
                    "start": start,
                    "end": start + duration,
                }
            )
    return pd.DataFrame(rows).sort_values("start", ignore_index=True)


def trace_times(spans: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per trace: its first span's start and its last span's end (``start_time + latency``)."""
    end = spans["start_time"] + pd.to_timedelta(spans["latency"], unit="ms")
    times = spans.assign(_end=end).groupby("trace_id")
    return times["start_time"].min(), times["_end"].max()


def affected_traces(spans: pd.DataFrame, windows: pd.DataFrame) -> pd.Series:
    """Per trace (indexed by ``trace_id``): whether a fault in ``windows`` touched it.

    A trace is affected when it has a span of a window's ``service`` and its time span
    overlaps that window's ``[start, end)``.
    """
    first, last = trace_times(spans)
    label = pd.Series(False, index=first.index)
    services = spans["service"].astype("str")
    for window in windows.itertuples():
        touched = first.index.isin(spans.loc[services == window.service, "trace_id"].unique())
        label |= touched & (last >= window.start).to_numpy() & (first < window.end).to_numpy()
    return label
