"""MicroserviceInteractionModel: the seed notebook's calls, and the seed itself run unmodified."""

import contextlib
import io
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesperf
from bayesperf import MicroserviceInteractionModel
from bayesperf import schema as S
from bayesperf.interaction import NoStartTimeWarning
from bayesperf.models import ConvergenceWarning
from bayesperf.simulate import Call, CallGraph, LogNormal, Mixture, simulate_traces

FAST = {"draws": 300, "tune": 300, "chains": 2}
SEED_NOTEBOOK = Path(__file__).parent / "data" / "seed-performance-modeling-notebook.txt"
pytestmark = pytest.mark.filterwarnings("ignore::bayesperf.models.ConvergenceWarning")


def graph() -> CallGraph:
    cart = Mixture([(0.7, LogNormal(2.0, 0.2)), (0.3, LogNormal(40.0, 0.2))])
    return CallGraph(
        root="front",
        root_latency=LogNormal(40.0, 0.4),
        calls={
            "front": [
                Call("cart", 1.0, cart),
                Call("pay", 0.3, LogNormal(30.0, 0.4)),
            ],
            "cart": [],
            "pay": [],
        },
    )


@pytest.fixture(scope="module")
def spans():
    return simulate_traces(graph(), 300, random_seed=11).spans


@pytest.fixture(scope="module")
def fitted(spans):
    model = MicroserviceInteractionModel(random_seed=3, **FAST)
    model.fit_latency_distribution(spans)
    model.build_markov_chain(spans)
    return model


def test_latency_keys_intervals_and_pairs(fitted, spans):
    overall = fitted.fit_latency_distribution(spans)
    assert overall["distribution"] == "nonparametric"  # the default latency family
    assert overall["n"] == len(spans)
    for key in ("mean", "median", "p95", "p99"):
        assert overall[f"{key}_lower"] <= overall[key] <= overall[f"{key}_upper"]
    assert overall["median"] < overall["p95"] < overall["p99"]
    pair = fitted.fit_latency_distribution(spans, ("front", "pay"))
    assert pair["n"] == int(((spans["caller"] == "front") & (spans["callee"] == "pay")).sum())
    # The pay calls have a 30 ms median: the posterior median covers it loosely.
    assert 20 < pair["median"] < 45
    root = fitted.fit_latency_distribution(spans, (None, "front"))
    assert root["n"] == spans["caller"].isna().sum()
    with pytest.raises(KeyError, match="unknown pair"):
        fitted.fit_latency_distribution(spans, ("front", "nowhere"))


def test_same_data_fit_once(fitted, spans):
    model = fitted.latency_model
    fitted.fit_latency_distribution(spans.copy(), ("front", "cart"))
    assert fitted.latency_model is model


def test_markov_chain_as_the_seed_reads_it(fitted):
    probs = fitted.transition_probabilities
    assert next(iter(probs)) == "front"  # every request enters at front
    assert S.START not in probs
    table = fitted.transition_table()
    for source, row in probs.items():
        unseen = table[(table["source"] == source) & (table["target"] == "(unseen)")]["mean"].sum()
        assert sum(row.values()) + unseen == pytest.approx(1.0)
        assert list(row.values()) == sorted(row.values(), reverse=True)


def test_predicted_paths_vary_and_reproduce(fitted, spans):
    paths = [fitted.predict_service_path("front", max_steps=5) for _ in range(20)]
    assert all(p[0] == "front" and len(p) <= 6 for p in paths)
    assert len({tuple(p) for p in paths}) > 1
    again = MicroserviceInteractionModel(random_seed=3, **FAST)
    again.build_markov_chain(spans)
    assert [again.predict_service_path("front", max_steps=5) for _ in range(20)] == paths
    with pytest.raises(ValueError, match="fron"):
        fitted.predict_service_path("frnt")


def test_clusters_added_in_place(spans):
    model = MicroserviceInteractionModel(random_seed=1, **FAST)
    frame = spans.copy()
    mixture = model.cluster_latency_patterns(frame, n_clusters=2)
    assert mixture is model.mixture_model
    assert set(frame["latency_cluster"].unique()) <= {0, 1}
    assert frame["latency_cluster_probability"].between(0.5, 1.0).all()
    # The fast cart calls (2 ms) fall in the fast regime, the 40 ms ones in the slow one.
    cart = frame[frame["callee"] == "cart"]
    fast = cart["latency"] < 6
    assert (cart.loc[fast, "latency_cluster"] == 0).mean() > 0.95
    assert (cart.loc[cart["latency"] > 25, "latency_cluster"] == 1).mean() > 0.95


def test_save_models_pickle_and_directory(fitted, tmp_path, spans):
    pkl = fitted.save_models(tmp_path / "models" / "interaction_models.pkl")
    back = MicroserviceInteractionModel.load_models(pkl)
    pd.testing.assert_frame_equal(back.latency_model.summary(), fitted.latency_model.summary())
    assert back.transition_probabilities == fitted.transition_probabilities
    folder = fitted.save_models(tmp_path / "nc")
    assert sorted(p.name for p in folder.iterdir()) == ["latency.nc", "transitions.nc"]
    loaded = bayesperf.load(folder / "latency.nc")
    pd.testing.assert_frame_equal(loaded.summary(), fitted.latency_model.summary())
    with pytest.raises(RuntimeError, match="nothing to save"):
        MicroserviceInteractionModel().save_models(tmp_path / "empty.pkl")


def test_clear_errors_before_fitting_and_on_bad_input():
    model = MicroserviceInteractionModel()
    with pytest.raises(RuntimeError, match="build_markov_chain"):
        model.predict_service_path("front")
    with pytest.raises(ValueError, match="lack column"):
        model.fit_latency_distribution(pd.DataFrame({"latency": [1.0, 2.0]}))
    with pytest.raises(ValueError, match="ci_prob"):
        MicroserviceInteractionModel(ci_prob=1.5)


# ------------------------------------------------------------- the seed, unmodified
def seed_cells(text: str) -> list[str]:
    """The code cells of the seed notebook's text export."""
    cells = re.split(r"^In \[None\]:\s*$", text, flags=re.M)[1:]
    # A cell runs until the next markdown heading.
    return [re.split(r"^## ", cell, flags=re.M)[0] for cell in cells]


def adapted(cell: str, csv: Path, models: Path) -> str:
    """The seed cell with only its import lines and data paths changed."""
    lines = []
    for line in cell.splitlines():
        if line.startswith(("import seaborn", "sys.path", "import sys", "%matplotlib")):
            continue
        line = line.replace("from model import", "from bayesperf import")
        line = line.replace("from analyzer import", "from bayesperf import")
        line = line.replace("'../data/processed/parsed_traces.csv'", repr(str(csv)))
        line = line.replace("'../models/interaction_models.pkl'", repr(str(models)))
        lines.append(line)
    return "\n".join(lines)


def run_seed(csv: Path, tmp_path: Path) -> tuple[str, dict, list]:
    """Run every seed cell, unmodified but for imports and paths; output, names, warnings."""
    import matplotlib

    matplotlib.use("Agg")
    cells = seed_cells(SEED_NOTEBOOK.read_text())
    assert len(cells) == 9  # the imports and the eight numbered sections
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for cell in cells:
            exec(adapted(cell, csv, tmp_path / "models" / "interaction_models.pkl"), namespace)
    shown = [w for w in caught if "non-interactive" not in str(w.message)]  # plt.show() on Agg
    return out.getvalue(), namespace, shown


def check_seed_output(printed: str, namespace: dict, n_spans: int) -> None:
    assert f"Loaded {n_spans} trace records" in printed
    for line in ("Distribution: nonparametric", "P99:", "Number of states:"):
        assert line in printed
    assert printed.count("Path ") == 3
    assert "Performance Hotspots:" in printed
    assert re.search(r"Detected \d+ anomalous traces", printed)
    assert "Models saved successfully" in printed
    traces = namespace["traces"]
    assert set(traces["latency_cluster"].unique()) <= {0, 1, 2}
    stats = namespace["latency_stats"]
    assert stats["p99_lower"] <= stats["p99"] <= stats["p99_upper"]
    assert np.isfinite(list(namespace["latency_model"].values())[1:6]).all()


@pytest.mark.slow
def test_seed_notebook_runs_unmodified(tmp_path):
    """Every seed cell runs on the bundled traces written as the seed's parsed_traces.csv."""
    csv = tmp_path / "parsed_traces.csv"
    bayesperf.datasets.load_online_boutique().to_csv(csv, index=False)
    printed, namespace, caught = run_seed(csv, tmp_path)
    assert not [w for w in caught if not issubclass(w.category, ConvergenceWarning)]
    check_seed_output(printed, namespace, 22969)
    assert "Call count:" in printed


# ------------------------------------------- the seed on differently shaped CSV files
#: parsed_traces.csv shapes users write: the columns kept, and how the start time is named
#: and written (None: no time column at all).
SHAPES = {
    "timestamp": (
        ["trace_id", "span_id", "parent_id", "service", "caller", "callee", "latency"],
        "timestamp",  # ISO-8601 text, as pandas writes datetimes
    ),
    "start_time": (["trace_id", "span_id", "parent_id", "service", "operation", "latency"], None),
    "no time": (
        ["trace_id", "span_id", "parent_id", "service", "caller", "callee", "latency"],
        None,
    ),
}


@pytest.fixture(scope="module")
def nezha_spans(shared_data):
    """A few hundred real traces: the first 120 of Nezha's fault-free minute."""
    path = shared_data / "nezha-onlineboutique" / "fault_free" / "2022-08-23_17_00_trace.csv"
    spans = bayesperf.read_traces(path)
    first = spans["trace_id"].drop_duplicates().iloc[:120]
    return spans[spans["trace_id"].isin(first)].reset_index(drop=True)


def write_shape(spans: pd.DataFrame, shape: str, path: Path) -> Path:
    columns, time_name = SHAPES[shape]
    frame = spans[columns].copy()
    if shape == "timestamp":
        frame[time_name] = spans["start_time"]  # written as "2022-08-23 17:00:...+00:00"
    elif shape == "start_time":
        frame["start_time"] = spans["start_time"].astype("int64")  # Unix nanoseconds
    frame.to_csv(path, index=False)
    return path


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_seed_notebook_on_differently_shaped_csv_files(nezha_spans, shape, tmp_path):
    """The seed's cells, unmodified, on parsed_traces.csv with `timestamp`, with
    `start_time`, and with no time column (then the chain follows calls, saying so once)."""
    csv = write_shape(nezha_spans, shape, tmp_path / "parsed_traces.csv")
    printed, namespace, caught = run_seed(csv, tmp_path)
    check_seed_output(printed, namespace, len(nezha_spans))
    others = [w for w in caught if not issubclass(w.category, ConvergenceWarning)]
    no_time = [w for w in others if issubclass(w.category, NoStartTimeWarning)]
    assert len(no_time) == (1 if shape == "no time" else 0)
    assert others == no_time
    # The chain the seed printed is the one built from the canonical table: in time
    # order where the file has times, from calls where it has none.
    mode = "calls" if shape == "no time" else "sequence"
    expected = MicroserviceInteractionModel(transition_mode=mode).build_markov_chain(nezha_spans)
    assert namespace["transition_probs"] == expected


def test_start_time_aliases_give_the_same_chain(spans):
    """timestamp / startTime / ts columns (ISO text or Unix s, ms, µs, ns) order spans."""
    expected = MicroserviceInteractionModel().build_markov_chain(spans)
    ns = spans["start_time"].astype("int64")
    for name, values in [
        ("timestamp", spans["start_time"].astype(str)),
        ("startTime", ns // 1_000),
        ("ts", ns // 1_000_000),
        ("Start", ns / 1e9),
    ]:
        frame = spans.drop(columns=["start_time"]).assign(**{name: values})
        assert MicroserviceInteractionModel().build_markov_chain(frame) == expected, name


def test_no_start_time_builds_the_calls_chain_with_one_warning(spans):
    frame = spans.drop(columns=["start_time"])
    with pytest.warns(NoStartTimeWarning, match="built from calls") as caught:
        chain = MicroserviceInteractionModel().build_markov_chain(frame)
    assert len(caught) == 1
    assert chain == MicroserviceInteractionModel(transition_mode="calls").build_markov_chain(spans)
    # Parent links alone (no caller/callee columns) give the same calls.
    links = frame.drop(columns=["caller", "callee"])
    with pytest.warns(NoStartTimeWarning):
        assert MicroserviceInteractionModel().build_markov_chain(links) == chain
