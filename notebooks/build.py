"""Write the example notebooks from the cell sources below, and execute them.

The notebooks are generated, so that they are reviewed as code and rebuilt the same way::

    .venv/bin/python notebooks/build.py                  # write + execute both (full size)
    .venv/bin/python notebooks/build.py --no-execute     # write the cells only
    .venv/bin/python notebooks/build.py performance-modeling --draws 100 --chains 2

Executed notebooks are saved with their outputs. The sampler size comes from the
environment variables ``BAYESPERF_NOTEBOOK_DRAWS`` (draws and tuning steps per chain,
default 1000) and ``BAYESPERF_NOTEBOOK_CHAINS`` (default 4), read by the notebooks
themselves; ``--draws`` / ``--chains`` set them for the run. Files the notebooks write go
to ``BAYESPERF_NOTEBOOK_OUTPUT`` (default ``notebooks/_output``, git-ignored).

:func:`execute` is shared with ``tests/test_notebooks.py``: the kernel is always the
Python running this script (ipykernel's built-in ``python3`` spec, never a kernel spec
installed elsewhere on the machine).
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
DRAWS_ENV = "BAYESPERF_NOTEBOOK_DRAWS"
CHAINS_ENV = "BAYESPERF_NOTEBOOK_CHAINS"
OUTPUT_ENV = "BAYESPERF_NOTEBOOK_OUTPUT"
FULL_DRAWS, FULL_CHAINS = 1000, 4


def md(text: str) -> nbformat.NotebookNode:
    """A markdown cell from an indented triple-quoted string."""
    return new_markdown_cell(textwrap.dedent(text).strip())


def code(text: str) -> nbformat.NotebookNode:
    """A code cell from an indented triple-quoted string."""
    return new_code_cell(textwrap.dedent(text).strip())


SETTINGS = """\
# Sampler size. CI executes this notebook with small values, e.g.
# BAYESPERF_NOTEBOOK_DRAWS=100 BAYESPERF_NOTEBOOK_CHAINS=2.
DRAWS = int(os.environ.get("BAYESPERF_NOTEBOOK_DRAWS", "1000"))  # and as many tuning steps
CHAINS = int(os.environ.get("BAYESPERF_NOTEBOOK_CHAINS", "4"))
SAMPLER = {"draws": DRAWS, "tune": DRAWS, "chains": CHAINS, "progressbar": False}
# Files written here (git-ignored), never into the repository's tracked files.
OUTPUT = Path(os.environ.get("BAYESPERF_NOTEBOOK_OUTPUT", "_output"))
OUTPUT.mkdir(parents=True, exist_ok=True)
pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 20)
pd.set_option("display.float_format", lambda x: f"{x:,.0f}" if abs(x) >= 1e4 else f"{x:.4g}")
print(f"bayesperf {bayesperf.__version__}: {CHAINS} chains x {DRAWS} draws ({DRAWS} tuning)")
"""


def settings_note(what: str) -> nbformat.NotebookNode:
    """The markdown cell saying which sampler settings produced the committed outputs."""
    return md(
        f"""
        **Sampler settings.** The committed outputs were produced by `notebooks/build.py`
        with the default {FULL_CHAINS} chains × {FULL_DRAWS:,} draws (and {FULL_DRAWS:,}
        tuning steps) on a shared 2-core machine; {what} CI executes the same cells with
        small draws (`BAYESPERF_NOTEBOOK_DRAWS=100`, `BAYESPERF_NOTEBOOK_CHAINS=2`), where
        convergence warnings are expected and numbers move a little.
        """
    )


# ======================================================================================
# performance-modeling.ipynb: the seed notebook, rebuilt on bayesperf
# ======================================================================================
def performance_modeling() -> nbformat.NotebookNode:
    """The seed notebook's eight sections on bayesperf, each followed by what Bayes adds."""
    cells = [
        md(
            """
            # Performance Modeling

            Build statistical and probabilistic models of microservice performance.

            This is the seed notebook (`performance-modeling-notebook`) rebuilt on
            **bayesperf**: its eight sections, in order, with its calls
            (`MicroserviceInteractionModel`, `PerformanceAnalyzer`, ...) now imported
            `from bayesperf`. Every seed cell is kept nearly verbatim and answers as
            before, but each number now comes from a posterior. After each seed cell, a
            short cell marked **Bayesian view** shows what the posterior adds: credible
            intervals, probabilities of exceeding a latency objective, posterior
            predictive checks, convergence diagnostics and model comparison.

            Data: the bundled fault-free minute of Google Online Boutique traces (Nezha
            dataset, MIT): 22,969 spans in 502 traces over 10 services.
            """
        ),
        md(
            """
            Changes to the seed's import cell: `from model import` / `from analyzer import`
            become `from bayesperf import`; `sys.path.append('../src')` is gone (bayesperf
            is installed); `seaborn` and `scipy.stats` were imported but never used, and
            are dropped, and so is `numpy`, also unused.
            """
        ),
        code(
            """\
import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

import bayesperf
from bayesperf import MicroserviceInteractionModel, PerformanceAnalyzer

%matplotlib inline
"""
        ),
        code(SETTINGS),
        settings_note("the whole notebook then runs in about a minute."),
        # ----------------------------------------------------------------- 1. Load Data
        md("## 1. Load Data"),
        md(
            """
            The seed reads `../data/processed/parsed_traces.csv`, a flat table of spans.
            We write the bundled traces in exactly that form (bayesperf's canonical
            columns: `trace_id, span_id, parent_id, service, operation, caller, callee,
            start_time, latency` in ms, `error`) and read them back with `pd.read_csv`, as
            the seed does. `bayesperf.datasets.load_online_boutique()` could be used
            directly (it keeps categorical and datetime dtypes); the round trip shows that
            every call below accepts the plain CSV too.
            """
        ),
        code(
            """\
bayesperf.datasets.load_online_boutique().to_csv(OUTPUT / "parsed_traces.csv", index=False)
"""
        ),
        code(
            """\
# Load processed traces
traces = pd.read_csv(OUTPUT / "parsed_traces.csv")
print(f"Loaded {len(traces)} trace records")
traces.head()
"""
        ),
        md(
            """
            **Bayesian view.** Before modelling: what the reader kept. The read report
            counts every record seen, kept and dropped (with the reason), so the span
            counts behind every posterior below are accounted for.
            """
        ),
        code(
            """\
print(bayesperf.datasets.load_online_boutique().attrs["read_report"])
print(f"{traces['trace_id'].nunique()} traces, {traces['service'].nunique()} services")
"""
        ),
        # ------------------------------------------------ 2. Fit Latency Distributions
        md("## 2. Fit Latency Distributions"),
        md(
            """
            The seed's `MicroserviceInteractionModel()` took no arguments; here it gets the
            sampler size (`**SAMPLER`) so CI can run the notebook quickly. One hierarchical
            lognormal model over every caller → callee pair is fitted on the first call;
            the overall distribution is the span-weighted mixture of the pairs' posteriors.
            """
        ),
        code(
            """\
# Build interaction model
model = MicroserviceInteractionModel(**SAMPLER)

# Fit latency model for overall system
latency_model = model.fit_latency_distribution(traces)

print("Overall Latency Model:")
print(f"  Distribution: {latency_model['distribution']}")
print(f"  Mean: {latency_model['mean']:.2f} ms")
print(f"  Median: {latency_model['median']:.2f} ms")
print(f"  P95: {latency_model['p95']:.2f} ms")
print(f"  P99: {latency_model['p99']:.2f} ms")
"""
        ),
        md(
            """
            **Bayesian view.** Every statistic above is a posterior median; its 90%
            credible interval comes with it. The sampler's convergence is checked per
            parameter block (R-hat ≤ 1.01, bulk and tail ESS ≥ 400, no divergences): a
            failing check would make the intervals untrustworthy.
            """
        ),
        code(
            """\
for key in ("mean", "median", "p95", "p99"):
    low, high = latency_model[f"{key}_lower"], latency_model[f"{key}_upper"]
    print(f"  {key:>6}: {latency_model[key]:8.2f} ms   90% interval [{low:.2f}, {high:.2f}]")
overall = model.latency_model.summary().loc[("(all)", "(all)")]
print(f"  empirical P99 of all spans: {overall['empirical_p99']:.2f} ms")
bayesperf.diagnose(model.latency_model)
"""
        ),
        # ----------------------------------------------------- 3. Service Pair Models
        md("## 3. Service Pair Models"),
        code(
            """\
# Fit models for top service pairs
if "caller" in traces.columns and "callee" in traces.columns:
    top_pairs = traces.groupby(["caller", "callee"]).size().nlargest(5)

    print("Latency Models for Top 5 Service Pairs:\\n")
    for (caller, callee), count in top_pairs.items():
        pair = (caller, callee)
        pair_model = model.fit_latency_distribution(traces, pair)
        print(f"{caller} -> {callee}:")
        print(f"  Call count: {count}")
        print(f"  Mean latency: {pair_model['mean']:.2f} ms")
        print(f"  P95: {pair_model['p95']:.2f} ms")
        print()
"""
        ),
        md(
            """
            **Bayesian view.** These calls did not fit five more models: all pairs share one
            hierarchical fit, so a pair with few spans borrows strength from the others and
            gets an honestly wide interval. The forest plot shows every pair's posterior P99
            (point: median, line: 90% interval, diamond: the empirical P99 of its spans). A
            latency objective becomes a probability: P(P99 > 250 ms) per pair. `p99_ppc_p`
            is the posterior predictive p-value of the empirical P99 (near 0: the lognormal
            misses that pair's tail).
            """
        ),
        code(
            """\
from bayesperf.plots import plot_quantile_forest

fig = plot_quantile_forest(model.latency_model, q=0.99)
plt.show()
"""
        ),
        code(
            """\
pairs = model.latency_model.summary(overall=False)
pairs["P(P99 > 250 ms)"] = model.latency_model.prob_exceeds(250.0, q=0.99)
columns = ["n", "empirical_p99", "p99_median", "p99_lower", "p99_upper"]
pairs[[*columns, "P(P99 > 250 ms)", "p99_ppc_p"]].sort_values("p99_median", ascending=False)
"""
        ),
        md(
            """
            Read the table critically: a posterior is only as good as its model. Where
            `p99_ppc_p` is near 0 the empirical P99 is improbable under the fitted
            lognormal, and the posterior P99 can sit far from it (the root pair
            `(none) → frontend` most of all). Real pairs are multimodal (cache hits and
            misses, different operations behind one pair): the posterior predictive grid in
            section 7 shows it, and the mixture of section 6 fits such shapes.
            """
        ),
        # ------------------------------------------------------- 4. Markov Chain Model
        md("## 4. Markov Chain Model"),
        code(
            """\
# Build Markov chain if trace data available
if "trace_id" in traces.columns and "service" in traces.columns:
    transition_probs = model.build_markov_chain(traces)

    print("Markov Chain Transition Probabilities:")
    print(f"Number of states: {len(transition_probs)}")

    # Show example transitions
    for service in list(transition_probs.keys())[:3]:
        print(f"\\nFrom {service}:")
        for next_service, prob in transition_probs[service].items():
            print(f"  -> {next_service}: {prob:.3f}")
"""
        ),
        md(
            """
            **Bayesian view.** The chain (consecutive services of a trace, ordered by start
            time) is a Dirichlet posterior per source service, exact and conjugate: no
            sampling. Each probability above is a posterior mean, and each has an
            interval; each row also keeps an explicit `(unseen)` share for transitions never
            observed from that service. The graph draws edge widths by posterior mean,
            labelled `mean [90% interval]`.
            """
        ),
        code(
            """\
table = model.transition_table()
table.sort_values("count", ascending=False).head(12)
"""
        ),
        code(
            """\
from bayesperf.plots import plot_transition_graph

fig = plot_transition_graph(model.transition_model, min_prob=0.02)
plt.show()
"""
        ),
        # ---------------------------------------------------- 5. Predict Service Paths
        md("## 5. Predict Service Paths"),
        code(
            """\
# Predict likely service call paths
if model.transition_probabilities:
    start_service = list(model.transition_probabilities.keys())[0]  # noqa: RUF015

    print(f"Predicting service paths starting from: {start_service}\\n")

    for i in range(3):
        path = model.predict_service_path(start_service, max_steps=5)
        print(f"Path {i + 1}: {' -> '.join(path)}")
"""
        ),
        md(
            """
            **Bayesian view.** Each predicted path is a posterior predictive draw: a
            transition matrix drawn from the posterior, then a walk. Instead of three
            random walks one can ask for the most probable complete paths, the posterior of
            a path's probability (mean, median, 90% interval), and the expected number of
            visits to each service per request, with intervals.
            """
        ),
        code(
            """\
chain = model.transition_model
likely = chain.most_likely_paths("START", k=5, max_steps=12)
likely["path"] = likely["path"].map(" -> ".join)
print(likely.to_string(index=False))
best = chain.most_likely_paths("START", k=1, max_steps=12)["path"].iloc[0]
print("\\nPosterior of the most likely path's probability:")
print(chain.path_probability(best, random_seed=1).round(4).to_string())
"""
        ),
        code(
            """\
chain.expected_visits("START", random_seed=1).head(12)
"""
        ),
        # --------------------------------------------------- 6. Cluster Latency Patterns
        md("## 6. Cluster Latency Patterns"),
        md(
            """
            The seed's Gaussian mixture becomes a Bayesian mixture of lognormal latency
            regimes; `latency_cluster` (0 = fastest regime) is each span's most probable
            component, and `latency_cluster_probability` its membership probability. The
            seed's figure follows unchanged (linear latency axis, 30 bins per cluster).
            """
        ),
        code(
            """\
# Cluster latency patterns
if "latency" in traces.columns:
    gmm = model.cluster_latency_patterns(traces, n_clusters=3)

    # Visualize clusters
    plt.figure(figsize=(12, 6))
    for i in range(3):
        cluster_data = traces[traces["latency_cluster"] == i]["latency"]
        plt.hist(cluster_data, bins=30, alpha=0.5, label=f"Cluster {i}")

    plt.xlabel("Latency (ms)")
    plt.ylabel("Frequency")
    plt.title("Latency Clusters")
    plt.legend()
    plt.show()
"""
        ),
        md(
            """
            **Bayesian view.** Latencies span four orders of magnitude, so the regimes are
            visible only on a log axis. The mixture plot shows the spans coloured by most
            probable regime, the posterior mixture density with its 90% band, and each
            weighted component. The summary gives each regime's weight, median and spread
            with intervals; membership is a probability, not a hard label.
            """
        ),
        code(
            """\
from bayesperf.plots.mixture import plot_mixture

fig = plot_mixture(gmm)
plt.show()
cols = ["weight_median", "weight_lower", "weight_upper", "median_ms_median"]
print(gmm.summary()[[*cols, "median_ms_lower", "median_ms_upper", "sigma_median"]])
confident = (traces["latency_cluster_probability"] > 0.9).mean()
print(f"\\nspans assigned with probability > 0.9: {confident:.1%}")
"""
        ),
        md(
            """
            Is the mixture worth its extra parameters? One lognormal, one gamma and the
            three-regime mixture, all fitted to all spans as one group (`by=None`; with a
            single group there is no hierarchy to fit, hence `pooling="none"`), share the same
            fitting cells, so `bayesperf.compare` ranks them by PSIS-LOO expected log
            predictive density per span (`elpd`; `elpd_diff` from the best, with its
            standard error `dse`; `weight` from stacking).
            """
        ),
        code(
            """\
from bayesperf import LatencyModel

single = {
    family: LatencyModel(family, by=None, pooling="none").fit(traces, random_seed=0, **SAMPLER)
    for family in ("lognormal", "gamma")
}
comparison = bayesperf.compare({**single, "mixture (3)": gmm})
comparison[["rank", "elpd", "se", "elpd_diff", "dse", "p", "weight"]]
"""
        ),
        # --------------------------------------------------- 7. Performance Analysis
        md("## 7. Performance Analysis"),
        md(
            """
            `PerformanceAnalyzer` answers the seed's three questions from a fitted
            posterior (again given `**SAMPLER`). A seed-era analyzer also returned `std`,
            `min` and `max`; sample extremes have no posterior, so the statistics are
            `mean`, `median`, `p95`, `p99` and each one's 90% interval (`_lower`,
            `_upper`). Without a `baseline`, `detect_anomalies` scores each span against the
            *other* spans of the same window, so only isolated extremes can be flagged,
            with the false discovery rate controlled at 5% (Benjamini–Hochberg across
            traces).
            """
        ),
        code(
            """\
# Comprehensive performance analysis
analyzer = PerformanceAnalyzer(**SAMPLER)

# Latency analysis
latency_stats = analyzer.analyze_latency_distribution(traces)
print("Latency Statistics:")
for key, value in latency_stats.items():
    print(f"  {key}: {value:.2f} ms")

# Identify hotspots
print("\\nPerformance Hotspots:")
hotspots = analyzer.identify_hotspots(traces, top_n=5)
print(hotspots)

# Detect anomalies
anomalies = analyzer.detect_anomalies(traces)
print(f"\\nDetected {len(anomalies)} anomalous traces")
"""
        ),
        md(
            """
            **Bayesian view.** Hotspots are ranked per posterior draw: `p_top5` is the
            probability that a pair is among the five largest contributors (ms per trace =
            calls per trace × mean latency). Latency is the span duration as recorded, and a
            parent span includes its children, so pairs near the root rank high. An SLO
            becomes P(P99 ≤ threshold) per pair (the root row `(none) → frontend` is the
            end-to-end objective). The posterior predictive grid checks the model against
            each pair's histogram: bars outside the band are spans the lognormal does not
            expect.
            """
        ),
        code(
            """\
if len(anomalies):
    print(anomalies[["trace_id", "q_value", "caller", "callee", "latency"]].head())
analyzer.slo_probability(traces, threshold_ms=500.0, q=0.99).head(8)
"""
        ),
        code(
            """\
from bayesperf.plots import plot_ppc_grid

fig = plot_ppc_grid(analyzer.latency_model(traces), max_groups=6)
plt.show()
"""
        ),
        # ------------------------------------------------------------ 8. Save Models
        md("## 8. Save Models"),
        md(
            """
            The seed's `../models/interaction_models.pkl` becomes a file in `OUTPUT`
            (`notebooks/_output/` by default, git-ignored).
            """
        ),
        code(
            """\
# Save trained models
model.save_models(OUTPUT / "interaction_models.pkl")
print("Models saved successfully")
"""
        ),
        md(
            """
            **Bayesian view.** A pickle ties the file to this Python and bayesperf version.
            Given a directory instead, `save_models` writes each model's posterior as a
            portable NetCDF file (an ArviZ `DataTree`, readable without bayesperf); each is
            read back with `bayesperf.load` and answers exactly as before.
            """
        ),
        code(
            """\
folder = model.save_models(OUTPUT / "models")
for file in sorted(folder.iterdir()):
    print(f"{file.name:16} {file.stat().st_size / 1e6:6.2f} MB")
loaded = bayesperf.load(folder / "latency.nc")
same = loaded.summary(overall=False).equals(model.latency_model.summary(overall=False))
print(f"reloaded latency model: {loaded!r}; same summary: {same}")
"""
        ),
    ]
    return notebook(cells)


# ======================================================================================
# regression-and-anomalies.ipynb: hotel loads and Online Boutique fault minutes
# ======================================================================================
def regression_and_anomalies() -> nbformat.NotebookNode:
    """Hotel reservation load 25 vs 100 as a regression; Online Boutique faults as anomalies."""
    cells = [
        md(
            """
            # Regressions and anomalies on real traces

            Two questions operators ask of traces, answered with posteriors from
            `bayesperf.PerformanceAnalyzer`:

            1. **Regression.** DeathStarBench *hotelReservation* traced at 25 and at
               100 requests/s (1,000 traces each, Jaeger JSON): did each caller → callee
               pair's P99 latency rise, and how sure are we? Control: a window compared
               with itself.
            2. **Anomalies.** Google *Online Boutique* (Nezha dataset) in eight minutes
               with injected faults, scored against a fault-free minute: which traces are
               improbable under the baseline, and do the flags line up with the
               injection list (when and where each fault was injected)?

            The traces are read from `../shared/data` beside the repository (see
            `shared/data/README.md`); they are not bundled with bayesperf.
            """
        ),
        code(
            """\
import json
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import bayesperf
from bayesperf import PerformanceAnalyzer

%matplotlib inline
"""
        ),
        code(SETTINGS),
        code(
            '''\
def shared_data() -> Path:
    """``../shared/data`` beside the repository holding this notebook."""
    here = Path.cwd().resolve()
    roots = [p for p in (here, *here.parents) if (p / "bayesperf" / "__init__.py").is_file()]
    if not roots:
        raise FileNotFoundError(f"run this notebook from the bayesperf repository (cwd: {here})")
    repo = roots[0]
    data = repo.parent / "shared" / "data"
    if not data.is_dir():
        raise FileNotFoundError(
            f"the real traces are expected in {data} (../shared/data beside the repository); "
            "this notebook needs the hotel-reservation and Online Boutique folders there"
        )
    return data


DATA = shared_data()
print("../shared/data:", ", ".join(sorted(p.name for p in DATA.iterdir() if p.is_dir())))
'''
        ),
        settings_note("the whole notebook then runs in about 30 seconds."),
        # --------------------------------------------------------------- regression
        md(
            """
            ## 1. Regression: hotel reservation at load 25 vs load 100

            `compare_windows(before, after, q=0.99, threshold=0.1)` fits the hierarchical
            lognormal model to each window (same configuration and seed) and, per pair,
            gives the posterior of the P99 ratio after / before: its median and 90%
            interval, `p_increase` = P(ratio > 1) and `p_regression` = P(ratio > 1.1), a
            rise of more than 10%. `empirical_ratio` is the ratio of the raw sample P99s,
            which carries no uncertainty.
            """
        ),
        code(
            """\
hotel_dir = DATA / "jaeger-hotel-reservation"
hotel = {load: bayesperf.read_traces(hotel_dir / f"hotel_load{load}.json") for load in (25, 100)}
for load, spans in hotel.items():
    print(f"load {load:>3}: {len(spans):,} spans in {spans['trace_id'].nunique():,} traces")

analyzer = PerformanceAnalyzer(**SAMPLER)
regression = analyzer.compare_windows(hotel[25], hotel[100], q=0.99, threshold=0.1)
regression
"""
        ),
        md(
            """
            **Control.** The same window against itself: the two posteriors are
            independent draws (the second is permuted), so P(ratio > 1) should be near 0.5
            and P(regression) small. Two pairs have bimodal tails the lognormal misses
            (`frontend → reservation` and `search → rate`: posterior P99 near 1 s and
            0.37 s against empirical 51 and 13 ms; `p99_ppc_p` 0): their P99 posteriors
            are wide, so even against itself P(+10%) is about 0.37. That is the posterior
            being honest about a poorly fitting family, not a regression; `p99_ppc_p` near
            0 is the warning sign to check before trusting a ratio.
            """
        ),
        code(
            """\
control = analyzer.compare_windows(hotel[25], hotel[25], q=0.99, threshold=0.1)
fit25 = analyzer.latency_model(hotel[25]).summary(overall=False)
columns = ["empirical_ratio", "ratio", "ratio_lower", "ratio_upper", "p_increase", "p_regression"]
control.join(fit25[["empirical_p99", "p99_ppc_p"]])[[*columns, "empirical_p99", "p99_ppc_p"]]
"""
        ),
        code(
            '''\
def label(key) -> str:
    """A group key as ``caller → callee``."""
    return " → ".join(map(str, key))


order = regression.sort_values("ratio").index
fig, ax = plt.subplots(figsize=(8, 4.5))
y = np.arange(len(order))
for offset, (name, table, color) in enumerate(
    [("load 25 → 100", regression, "C3"), ("load 25 vs itself (control)", control, "C0")]
):
    t = table.loc[order]
    pos = y + (0.18 if offset == 0 else -0.18)
    ax.hlines(pos, t["ratio_lower"], t["ratio_upper"], color=color, lw=2.5)
    ax.plot(t["ratio"], pos, "o", color=color, label=f"{name}: posterior median, 90% interval")
    ax.plot(t["empirical_ratio"], pos, "d", mfc="none", color=color, ms=7)
ax.plot([], [], "d", mfc="none", color="0.3", label="empirical P99 ratio")
ax.axvline(1.0, color="0.4", lw=1)
ax.axvline(1.1, color="0.4", lw=1, ls="--", label="regression threshold (+10%)")
ax.set_xscale("log")
ticks = [0.5, 0.75, 1, 1.5, 2, 3, 4, 6]
ax.set_xticks(ticks, labels=[f"{t:g}" for t in ticks])
ax.xaxis.set_minor_formatter(plt.NullFormatter())
ax.set_yticks(y, [label(k) for k in order])
ax.set_xlabel("P99 latency ratio, after / before")
ax.set_title("Hotel reservation: posterior P99 ratio per caller → callee pair")
ax.legend(loc="upper center", bbox_to_anchor=(0.4, -0.14), ncol=2, fontsize=8, frameon=False)
fig.tight_layout()
plt.show()
'''
        ),
        code(
            '''\
def span(column: pd.Series, digits: int = 2) -> str:
    """The range of a column, as ``min–max``."""
    return f"{column.min():.{digits}f}–{column.max():.{digits}f}"


print(f"load 25 → 100, {len(regression)} pairs:")
print(f"  P(regression) {span(regression['p_regression'], 3)}")
print(f"  posterior P99 ratio medians {span(regression['ratio'])}")
print(f"  empirical P99 ratios {span(regression['empirical_ratio'])}")
print("control, load 25 vs itself:")
print(f"  P(increase) {span(control['p_increase'])}")
print(f"  P(regression) {span(control['p_regression'], 3)}")
'''
        ),
        # ---------------------------------------------------------------- anomalies
        md(
            """
            ## 2. Anomalies: Online Boutique fault minutes vs a fault-free baseline

            **Ground truth.** The injection list gives, per fault, the injection time and
            the pod (the service is the pod name without its `-<replicaset>-<pod>` suffix),
            but no end time. The recorded episodes show each fault's effect for 85–132 s
            after injection, gone 8 minutes later, so a fault is taken as active for 3
            minutes after injection, and a trace as *affected* when it has a span of the
            injected service and overlaps that window (the same rule as
            `tests/analysis/nezha_faults.py`). The eight recorded minutes cover three
            injections into the frontend, which every trace passes through; the minute
            before each injection is the negative class.
            """
        ),
        code(
            """\
ob = DATA / "nezha-onlineboutique"
fault_list = ob / "fault" / "2022-08-22-fault_list.json"
FAULT_DURATION = pd.Timedelta("3min")

injections = pd.DataFrame(
    [
        {
            "service": f["inject_pod"].rsplit("-", 2)[0],
            "kind": f["inject_type"],
            "start": pd.Timestamp(int(f["inject_timestamp"]), unit="s", tz="UTC"),
        }
        for faults in json.loads(fault_list.read_text()).values()
        for f in faults
    ]
).sort_values("start", ignore_index=True)
injections["end"] = injections["start"] + FAULT_DURATION

files = sorted((ob / "fault").glob("*_trace.csv"))
minutes = {path.stem.removesuffix("_trace"): bayesperf.read_traces(path) for path in files}
first = min(s["start_time"].min() for s in minutes.values())
last = max(s["start_time"].max() for s in minutes.values())
overlap = (injections["end"] >= first) & (injections["start"] <= last)
recorded = injections[overlap].reset_index(drop=True)
print(f"{len(minutes)} fault minutes, {sum(map(len, minutes.values())):,} spans")
print(f"{len(injections)} injections listed, {len(recorded)} while these minutes were recorded:")
recorded
"""
        ),
        code(
            '''\
def trace_times(spans: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per trace: its first span start and last span end."""
    end = spans["start_time"] + pd.to_timedelta(spans["latency"], unit="ms")
    times = spans.assign(_end=end).groupby("trace_id")
    return times["start_time"].min(), times["_end"].max()


def affected(spans: pd.DataFrame) -> pd.Series:
    """Per trace: whether it touches an injected service while that fault is active."""
    begin, finish = trace_times(spans)
    label = pd.Series(False, index=begin.index)
    services = spans["service"].astype("str")
    for w in injections.itertuples():
        touched = begin.index.isin(spans.loc[services == w.service, "trace_id"].unique())
        label |= touched & (finish >= w.start).to_numpy() & (begin < w.end).to_numpy()
    return label


def episode(time: pd.Timestamp) -> str:
    """The recorded injection nearest in time (the minutes around it are its episode)."""
    nearest = (recorded["start"] - time).abs().idxmin()
    return f"{recorded.loc[nearest, 'start']:%H:%M:%S} {recorded.loc[nearest, 'kind']}"
'''
        ),
        md(
            """
            **Detection.** The baseline is the fault-free minute (recorded a day later).
            Each span gets its posterior predictive tail probability under its group's
            model fitted on the baseline (within the baseline's range, its rank among the
            baseline's spans; beyond it, the lognormal's tail); a trace combines its spans
            (Simes); Benjamini–Hochberg across each minute's traces keeps the expected
            share of false flags among the flagged at 5%. Spans are grouped by (caller,
            callee, operation): a caller → callee pair mixes operations of very different
            speeds, which hides a 10× slower span inside the pair's wide range (the default
            grouping by pair is compared at the end).
            """
        ),
        code(
            '''\
baseline = bayesperf.read_traces(ob / "fault_free" / "2022-08-23_17_00_trace.csv")
by_operation = PerformanceAnalyzer(by=("caller", "callee", "operation"), **SAMPLER)


def score(analyzer: PerformanceAnalyzer) -> pd.DataFrame:
    """Every trace of every fault minute, scored against the baseline, with its truth."""
    rows = []
    for name, spans in minutes.items():
        result = analyzer.detect_anomalies(spans, baseline=baseline, flagged_only=False)
        result["minute"] = name
        result["affected"] = affected(spans).reindex(result["trace_id"]).to_numpy()
        begin, finish = trace_times(spans)
        duration = (finish - begin).dt.total_seconds() * 1e3
        result["duration_ms"] = duration.reindex(result["trace_id"]).to_numpy()
        rows.append(result)
    scored = pd.concat(rows, ignore_index=True)
    scored["episode"] = scored["start_time"].map(episode)
    return scored


scored = score(by_operation)
print(f"{len(scored):,} traces scored: {scored['flagged'].sum():,} flagged, ", end="")
print(f"{scored['affected'].sum():,} affected")
columns = ["minute", "trace_id", "q_value", "caller", "callee", "operation", "latency"]
scored.loc[scored["flagged"], [*columns, "span_p_value"]].head()
'''
        ),
        code(
            '''\
def confusion(scored: pd.DataFrame, by: str) -> pd.DataFrame:
    """Confusion counts, precision and recall per value of ``by``, and in total."""
    flagged, truth = scored["flagged"], scored["affected"]
    table = pd.DataFrame(
        {
            "traces": scored.groupby(by).size(),
            "affected": truth.groupby(scored[by]).sum(),
            "flagged": flagged.groupby(scored[by]).sum(),
            "tp": (flagged & truth).groupby(scored[by]).sum(),
            "fp": (flagged & ~truth).groupby(scored[by]).sum(),
        }
    )
    table.loc["total"] = table.sum()
    table["precision"] = table["tp"] / table["flagged"].where(table["flagged"] > 0)
    table["recall"] = table["tp"] / table["affected"].where(table["affected"] > 0)
    return table


per_fault = confusion(scored, "episode")
per_fault
'''
        ),
        md(
            """
            Per fault: under the frontend CPU faults most affected traces are flagged, and
            few unaffected ones. The `return` fault makes requests *faster* (the frontend
            answers at once and calls nothing: the band of ~0.3 ms traces after 04:02:07 in
            the timeline below). A test for slow tails barely sees it, and such short
            traces also occur in the baseline, so `tail="both"` does not find them either
            (recall 8–15%, `docs/analysis.md`): a fault that changes the call structure
            needs the transition model. The per-minute table shows where the false flags
            fall: on the minutes before each injection (traces unlike a baseline recorded
            a day later).
            """
        ),
        code(
            """\
confusion(scored, "minute")
"""
        ),
        code(
            """\
import matplotlib.dates as mdates
from matplotlib.patches import Patch

timeline = scored
episodes = list(dict.fromkeys(timeline.sort_values("start_time")["episode"]))
fig, axes = plt.subplots(1, len(episodes), figsize=(13, 4.2), sharey=True)
for ax, name in zip(np.atleast_1d(axes), episodes, strict=True):
    t = timeline[timeline["episode"] == name]
    w = recorded.loc[(recorded["start"] - t["start_time"].median()).abs().idxmin()]
    ax.axvspan(w["start"], w["end"], color="C1", alpha=0.12, lw=0)
    ax.axvline(w["start"], color="C1", lw=1.5)
    ok = ~t["flagged"]
    ax.scatter(t.loc[ok, "start_time"], t.loc[ok, "duration_ms"], s=6, color="0.6", alpha=0.5)
    ax.scatter(t.loc[~ok, "start_time"], t.loc[~ok, "duration_ms"], s=9, color="C3")
    ax.set_title(f"{w['service']}: {w['kind']} at {w['start']:%H:%M:%S}", fontsize=10)
    ax.set_xlim(t["start_time"].min(), t["start_time"].max())
    ax.xaxis.set_major_locator(mdates.MinuteLocator())
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    ax.set_yscale("log")
    ax.set_xlabel("trace start (UTC, 2022-08-22)")
np.atleast_1d(axes)[0].set_ylabel("trace duration (ms)")
handles = [
    plt.Line2D([], [], marker="o", ls="", color="C3", label="flagged (FDR 5%)"),
    plt.Line2D([], [], marker="o", ls="", color="0.6", label="not flagged"),
    plt.Line2D([], [], color="C1", label="injection"),
    Patch(color="C1", alpha=0.12, label="taken as active (3 min)"),
]
fig.suptitle("Online Boutique fault minutes scored against a fault-free baseline")
fig.tight_layout()
fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, frameon=False)
plt.show()
"""
        ),
        md(
            """
            **Grouping matters.** The same evaluation with the analyzer's default grouping
            by caller → callee pair (one more baseline fit), and the fault-free minute
            scored against itself with each grouping (each span against the *other*
            spans; ideally nothing is flagged).
            """
        ),
        code(
            """\
by_pair = PerformanceAnalyzer(**SAMPLER)
totals = pd.DataFrame(
    {
        "by (caller, callee, operation)": per_fault.loc["total"],
        "by (caller, callee)": confusion(score(by_pair), "episode").loc["total"],
    }
).T.astype({"traces": int, "affected": int, "flagged": int, "tp": int, "fp": int})
totals["fault-free vs itself: flagged"] = [
    len(by_operation.detect_anomalies(baseline)),
    len(by_pair.detect_anomalies(baseline)),
]
totals
"""
        ),
    ]
    return notebook(cells)


def notebook(cells: list[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    """A notebook of ``cells`` for the ``python3`` kernel."""
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i:02d}"  # stable ids: rebuilding changes no line that need not
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    return nb


NOTEBOOKS = {
    "performance-modeling": performance_modeling,
    "regression-and-anomalies": regression_and_anomalies,
}


def execute(nb: nbformat.NotebookNode, cwd: Path, timeout: int = 1800) -> nbformat.NotebookNode:
    """Execute ``nb`` in place in ``cwd``, on a kernel running this very Python.

    The kernel spec is ipykernel's built-in ``python3`` (its command is
    ``sys.executable -m ipykernel_launcher``), found without looking at kernel specs
    installed on the machine, so a user-level ``python3`` spec pointing at another
    interpreter cannot be picked up. The kernel inherits this process's environment
    (the ``BAYESPERF_NOTEBOOK_*`` settings).
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    specs = KernelSpecManager(kernel_dirs=[], ensure_native_kernel=True)
    km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs)
    client = NotebookClient(
        nb,
        km=km,
        timeout=timeout,
        record_timing=False,  # no timestamps in the saved notebooks
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute(cleanup_kc=True)  # shut the kernel down although we made its manager
    return nb


def main(argv: list[str] | None = None) -> None:
    """Write the notebooks (and execute them unless ``--no-execute``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"of {sorted(NOTEBOOKS)}; default: all")
    parser.add_argument("--no-execute", action="store_true", help="write the cells only")
    parser.add_argument("--draws", type=int, help=f"sets {DRAWS_ENV} (default {FULL_DRAWS})")
    parser.add_argument("--chains", type=int, help=f"sets {CHAINS_ENV} (default {FULL_CHAINS})")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(NOTEBOOKS))
    if unknown:
        parser.error(f"unknown notebook(s) {unknown}: choose from {sorted(NOTEBOOKS)}")
    if args.draws is not None:
        os.environ[DRAWS_ENV] = str(args.draws)
    if args.chains is not None:
        os.environ[CHAINS_ENV] = str(args.chains)
    for name in args.names or NOTEBOOKS:
        nb = NOTEBOOKS[name]()
        path = HERE / f"{name}.ipynb"
        if not args.no_execute:
            start = time.perf_counter()
            execute(nb, HERE)
            print(f"{name}: executed in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        nbformat.validate(nb)
        nbformat.write(nb, path)
        print(f"wrote {path.relative_to(HERE.parent)}", file=sys.stderr)


if __name__ == "__main__":
    main()
