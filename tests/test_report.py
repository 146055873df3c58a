"""bayesperf report: files, HTML sections and figures, CSV round trips, errors, browser."""

import base64
import contextlib
import io
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

import bayesperf
from bayesperf.cli import main
from bayesperf.io.parquet import write_parquet
from bayesperf.report import FIGURES, OUTPUT_FILES, SECTIONS, ReportOptions, _build, write_report
from bayesperf.simulate import Call, CallGraph, LogNormal, simulate_traces

# Four pairs with well separated latencies: a two-component mixture fits all spans.
GRAPH = CallGraph(
    root="frontend",
    root_latency=LogNormal(20.0, 0.3),
    calls={
        "frontend": [
            Call("cache", 0.9, LogNormal(0.5, 0.3)),
            Call("backend", 1.0, LogNormal(3.0, 0.3)),
        ],
        "backend": [Call("db", 0.5, LogNormal(8.0, 0.3))],
        "cache": [],
        "db": [],
    },
)
# PyMC's sampler caches its compiled models between runs (nutpie compiles each anew);
# the slow demo test runs the default, nutpie.
FAST = ["--quick", "--components", "2", "--sampler", "pymc"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class _Page(HTMLParser):
    """Section ids, figures (key -> PNG bytes), tables and placeholders of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.figures: dict[str, bytes] = {}
        self.tables: list[str] = []
        self.missing: list[str] = []
        self.natural: dict[str, str] = {}
        self._figure: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a["id"])
        elif tag == "figure":
            self._figure = a["data-figure"]
        elif tag == "img" and self._figure is not None:
            prefix = "data:image/png;base64,"
            assert a["src"].startswith(prefix)
            self.figures[self._figure] = base64.b64decode(a["src"][len(prefix) :])
            if "data-natural" in a:
                self.natural[self._figure] = a["data-natural"]
        elif tag == "table":
            self.tables.append(a.get("id", ""))
        elif a.get("data-missing-figure"):
            self.missing.append(a["data-missing-figure"])

    def handle_endtag(self, tag):
        if tag == "figure":
            self._figure = None


def parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def small_traces(tmp_path_factory) -> Path:
    spans, _ = simulate_traces(GRAPH, 300, random_seed=3)
    path = tmp_path_factory.mktemp("traces") / "small.parquet"
    write_parquet(spans, path)
    return path


@pytest.fixture(scope="module")
def report(small_traces, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    err, stdout = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(stdout):
        code = main(["report", str(small_traces), *FAST, "-o", str(out)])
    return {"code": code, "out": out, "stderr": err.getvalue(), "stdout": stdout.getvalue()}


def test_writes_every_file_and_exit_code_follows_the_checks(report):
    out = report["out"]
    for name in OUTPUT_FILES:
        assert (out / name).stat().st_size > 0, name
    for key in FIGURES:
        assert (out / "figures" / f"{key}.png").stat().st_size > 0, key
    assert (out / "comparison.csv").is_file()
    diagnostics = pd.read_csv(out / "diagnostics.csv")
    assert set(diagnostics["model"]) == {"latency", "latency, held-out half", "request", "mixture"}
    check = pd.read_csv(out / "holdout_check.csv")
    assert len(check) > 0 and set(check["covered"]) <= {True, False}
    # 3 exactly when a check failed (short --quick chains usually fail some).
    assert report["code"] == (0 if diagnostics["ok"].all() else 3)
    assert f"wrote {out / 'report.html'}" in report["stdout"]


def test_progress_names_each_step_with_elapsed_seconds(report):
    err = report["stderr"]
    steps = ("read traces", "latency model", "transition model", "request model", "mixture model")
    for step in steps:
        assert f"{step}: done in" in err
    assert "bayesperf report [" in err and " s] figures ..." in err
    if report["code"] == 3:
        assert "convergence checks failed" in err


def test_html_has_every_section_table_and_figure_inline(report):
    page = parse((report["out"] / "report.html").read_text(encoding="utf-8"))
    assert page.sections == list(SECTIONS)
    assert not page.missing
    assert set(page.figures) == set(FIGURES)
    for key, data in page.figures.items():
        width, height = png_size(data)
        assert width > 100 and height > 100, key
        assert data == (report["out"] / "figures" / f"{key}.png").read_bytes()
    for table in (
        "latency-table",
        "transition-table",
        "end-to-end-table",
        "attribution-table",
        "mixture-table",
        "comparison-table",
        "diagnostics-latency",
        "diagnostics-mixture",
        "provenance-table",
        "timings-table",
    ):
        assert table in page.tables
    text = (report["out"] / "report.html").read_text(encoding="utf-8")
    assert "records seen" in text and "dropped (all reasons)" in text
    assert "--components 2" in text  # the command line, in the provenance
    failed = pd.read_csv(report["out"] / "diagnostics.csv")["ok"].eq(False).any()
    assert ('class="banner fail"' in text) == failed
    assert ('<tr class="fail">' in text) == failed


def test_csvs_round_trip_and_match_the_saved_models(report):
    out = report["out"]
    latency = bayesperf.load(out / "latency.nc")
    table = pd.read_csv(out / "latency_summary.csv", index_col=[0, 1])
    expected = latency.summary()
    assert table.index.tolist() == expected.index.tolist()
    pd.testing.assert_frame_equal(table, expected, check_dtype=False, check_index_type=False)
    assert int(table.loc[("(all)", "(all)"), "n"]) == 1027

    transitions = bayesperf.load(out / "transitions.nc")
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "transitions.csv"),
        transitions.transition_probabilities(),
        check_dtype=False,
    )
    mixture = bayesperf.load(out / "mixture.nc")
    assert mixture.k == 2
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "mixture_summary.csv", index_col=0), mixture.summary()
    )
    comparison = pd.read_csv(out / "comparison.csv", index_col=0)
    # Four modes: the nonparametric model follows all of them, a 2-component mixture cannot.
    assert comparison.index.tolist() == ["nonparametric (one distribution)", "mixture (K=2)"]

    request = bayesperf.load(out / "request.nc")
    end_to_end = pd.read_csv(out / "end_to_end.csv", index_col=[0, 1])
    pd.testing.assert_frame_equal(end_to_end, request.summary(), check_dtype=False)
    assert end_to_end.index.tolist() == [("frontend", "request")]
    assert int(end_to_end["n"].iloc[0]) == 300
    attribution = pd.read_csv(out / "attribution.csv", index_col=[0, 1, 2])
    assert set(attribution.index.get_level_values("target")) == {
        "frontend",
        "cache",
        "backend",
        "db",
    }


def test_bad_input_exits_2_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert main(["report", str(bad), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and "recognise" in err
    assert main(["report", str(tmp_path / "nope.json"), "-o", str(tmp_path / "out")]) == 2
    assert "nope.json: no such file" in capsys.readouterr().err
    assert not (tmp_path / "out" / "report.html").exists()


def test_unknown_grouping_exits_2(small_traces, tmp_path, capsys):
    assert main(["report", str(small_traces), "--by", "region", "-o", str(tmp_path)]) == 2
    assert "region" in capsys.readouterr().err


def test_options_are_validated():
    with pytest.raises(ValueError, match="components"):
        ReportOptions(components=0)
    with pytest.raises(ValueError, match="draws"):
        ReportOptions(draws=0)
    assert ReportOptions.quick().sample_kwargs["draws"] == 200
    assert ReportOptions(by=None, mixture_by="callee").mixture_by == ("callee",)


def test_without_the_mixture_the_report_says_why(small_traces, tmp_path, monkeypatch):
    monkeypatch.setattr(_build, "_import_mixture", lambda: None)
    (tmp_path / "mixture.nc").write_text("from an earlier report")
    spans = bayesperf.read_traces(small_traces)
    options = ReportOptions.quick(by=None, nuts_sampler="pymc")
    result = write_report(spans, tmp_path, options)
    assert "mixture" in result.skipped and "comparison" in result.skipped
    assert not (tmp_path / "mixture.nc").exists()
    assert not (tmp_path / "mixture_summary.csv").exists()
    page = parse(result.html.read_text(encoding="utf-8"))
    assert page.sections == list(SECTIONS)
    assert page.missing == ["mixture"]
    assert set(page.figures) == set(FIGURES) - {"mixture"}
    assert "not available in this bayesperf installation" in result.html.read_text()
    assert set(result.diagnostics["model"]) == {"latency", "latency, held-out half", "request"}


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_headless_chromium_decodes_every_figure(report, tmp_path):
    # A copy with a probe script: after load, each <img> records its decoded size.
    probe = (
        "<script>window.addEventListener('load', () => document.querySelectorAll('img')"
        ".forEach(i => i.setAttribute('data-natural', i.naturalWidth + 'x' + "
        "i.naturalHeight)));</script></body>"
    )
    text = (report["out"] / "report.html").read_text(encoding="utf-8")
    page_path = tmp_path / "report.html"
    page_path.write_text(text.replace("</body>", probe), encoding="utf-8")
    dom = subprocess.run(
        [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page_path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    page = parse(dom)
    assert page.sections == list(SECTIONS)
    assert set(page.natural) == set(FIGURES)
    for key, size in page.natural.items():
        width, height = (int(v) for v in size.split("x"))
        assert (width, height) == png_size(page.figures[key]), key


@pytest.mark.slow
def test_demo_report_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["report", "--demo", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, f"the demo's convergence checks failed:\n{captured.err[-2000:]}"
    page = parse((out / "report.html").read_text(encoding="utf-8"))
    assert page.sections == list(SECTIONS)
    assert set(page.figures) == set(FIGURES) and not page.missing
    table = pd.read_csv(out / "latency_summary.csv", index_col=[0, 1])
    assert len(table) == 22 and table["n"].iloc[-1] == 22969
    assert len(bayesperf.load(out / "mixture.nc").summary()) == 3
    assert "records seen" in (out / "report.html").read_text(encoding="utf-8")
