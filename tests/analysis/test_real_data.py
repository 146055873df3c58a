"""PerformanceAnalyzer on real traces: Online Boutique fault minutes, hotel loads."""

import warnings

import pytest

import bayesperf
from bayesperf.analysis import PerformanceAnalyzer
from bayesperf.datasets.nezha import fault_windows
from bayesperf.models import ConvergenceWarning
from tests.analysis.nezha_faults import evaluate

FAST = {"draws": 400, "tune": 400, "chains": 2, "progressbar": False}
pytestmark = [
    pytest.mark.shared_data,
    pytest.mark.filterwarnings("ignore::bayesperf.models.ConvergenceWarning"),
]
#: Minutes recorded around the frontend's CPU faults (the "return" fault of 04:02
#: makes requests *faster*: see docs/analysis.md).
CPU_MINUTES = ("03_53", "03_54", "03_55", "04_11", "04_12")


@pytest.fixture(scope="module")
def ob(shared_data):
    return shared_data / "nezha-onlineboutique"


@pytest.fixture(scope="module")
def analyzer():
    return PerformanceAnalyzer(by=("caller", "callee", "operation"), **FAST)


@pytest.fixture(scope="module")
def normal(ob, analyzer):
    spans = bayesperf.read_traces(ob / "fault_free" / "2022-08-23_17_00_trace.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        analyzer.latency_model(spans)
    return spans


@pytest.mark.slow
def test_fault_minutes_flags_concentrate_on_the_injected_times(ob, analyzer, normal):
    windows = fault_windows(ob / "fault" / "2022-08-22-fault_list.json")
    minutes = [ob / "fault" / f"2022-08-22_{m}_trace.csv" for m in CPU_MINUTES]
    table = evaluate(analyzer, normal, minutes, windows)
    total = table.loc["total"]
    assert total["precision"] >= 0.8, table
    assert total["recall"] >= 0.6, table
    # Inside the fault (all traces affected) most traces are flagged.
    assert table.loc["2022-08-22_03_55", "recall"] >= 0.8, table


def test_fault_free_minute_scored_against_itself_flags_few(analyzer, normal):
    flagged = analyzer.detect_anomalies(normal)
    assert flagged.attrs["tested"] == 502
    assert len(flagged) <= 0.05 * 502, len(flagged)


@pytest.fixture(scope="module")
def hotel(shared_data):
    folder = shared_data / "jaeger-hotel-reservation"
    return {load: bayesperf.read_traces(folder / f"hotel_load{load}.json") for load in (25, 100)}


@pytest.mark.slow
def test_hotel_load_100_regresses_the_tails_that_moved(hotel):
    analyzer = PerformanceAnalyzer(**FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        table = analyzer.compare_windows(hotel[25], hotel[100], q=0.99, threshold=0.1)
    moved = table[table["empirical_ratio"] > 1.3]
    assert len(moved) == len(table) == 8  # every pair's empirical P99 rose 1.4-2.6x
    assert (moved["p_regression"] > 0.95).all(), moved
    same = analyzer.compare_windows(hotel[25], hotel[25], q=0.99, threshold=0.1)
    # Two pairs (reservation, rate) have bimodal tails the lognormal misses (PPC p 0.00):
    # their P99 posteriors are wide, so even against itself P(+10%) is ~0.37.
    assert (same["p_regression"] < 0.45).all(), same
    assert (same["p_increase"].between(0.4, 0.6)).all(), same
