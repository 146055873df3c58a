"""RequestModel on the real traces: held-out requests and an injected fault replayed.

Bootstrap self times keep these fast (no sampling); the benchmark
(``benchmarks/end_to_end.py``) measures both self-time models over five splits.
"""

import numpy as np
import pandas as pd
import pytest

import bayesperf
from bayesperf import RequestModel
from bayesperf.datasets.nezha import fault_windows
from bayesperf.summaries.calls import summarize_calls


def halves(spans: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = np.sort(spans["trace_id"].unique())
    first = set(np.random.default_rng(seed).permutation(ids)[: len(ids) // 2])
    in_first = spans["trace_id"].isin(first).to_numpy()
    return spans[in_first], spans[~in_first]


@pytest.mark.slow
@pytest.mark.shared_data
def test_hotel_held_out_requests(shared_data):
    spans = bayesperf.read_traces(shared_data / "jaeger-hotel-reservation" / "hotel_load25.json")
    fit, held_out = halves(spans)
    model = RequestModel(n_draws=100, n_requests=5000).fit(fit, random_seed=1)
    check = model.predictive_check(held_out, min_requests=50)
    assert check["n"].tolist() == [500, 500, 500]
    # Measured: P50/P95/P99 off by -10%, -8%, -2%; P95 and P99 covered, P50 not.
    assert check["error"].abs().max() < 0.12
    assert check["covered"].sum() >= 2


@pytest.mark.slow
@pytest.mark.shared_data
def test_fault_replay_beats_nothing_changed(shared_data):
    fault_dir = shared_data / "nezha-onlineboutique" / "fault"
    day = bayesperf.read_traces(sorted(fault_dir.glob("*_trace.csv")))
    windows = fault_windows(fault_dir / "2022-08-22-fault_list.json")
    fault = windows[windows["kind"] == "cpu_contention"].iloc[0]
    start = day.groupby("trace_id")["start_time"].transform("min")
    before = day[(start < fault["start"]).to_numpy()]
    during = day[((start >= fault["start"]) & (start < fault["end"])).to_numpy()]
    model = RequestModel(n_draws=50, n_requests=3000).fit(before, random_seed=1)
    measured = summarize_calls(during).self_time
    frontend = measured.select([g for g in measured.groups if g[0] == "frontend"])
    incident = model.scenario(replace={"frontend": frontend})
    unchanged = model.predictive_check(during)
    replayed = model.predictive_check(during, scenario=incident)
    # The page P50 went from ~150 ms to ~1.1 s: "nothing changed" is off by ~90%.
    assert (unchanged["error"].abs() > 0.5).loc[(slice(None), slice(None), "p50")].all()
    assert (replayed["error"].abs() < unchanged["error"].abs()).all()
    assert replayed["error"].abs().loc[(slice(None), slice(None), "p50")].max() < 0.2
