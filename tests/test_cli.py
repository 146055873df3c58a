import pandas as pd
import pytest

from bayesperf import datasets
from bayesperf.cli import main


def test_demo_prints_report_pairs_and_transitions(capsys, tmp_path):
    out_csv = tmp_path / "pairs.csv"
    assert main(["summary", "--demo", "--transitions", "calls", "-o", str(out_csv)]) == 0
    text = capsys.readouterr().out
    assert "records seen 22969" in text
    assert "22,969 spans, 502 traces, 10 services" in text
    assert "productcatalogservice" in text and "Transitions (calls)" in text
    table = pd.read_csv(out_csv)
    assert table["n"].sum() == 22969
    assert {"p50", "p95", "p99", "mean"} <= set(table.columns)


def test_overall_grouping(capsys):
    assert main(["summary", "--demo", "--by", "all"]) == 0
    assert "22969" in capsys.readouterr().out


def test_unreadable_input_is_a_clear_error(capsys, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert main(["summary", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and "recognise" in err


def test_unknown_grouping_column(capsys):
    assert main(["summary", "--demo", "--by", "region"]) == 2
    assert "region" in capsys.readouterr().err


def test_needs_traces_or_demo(capsys):
    assert main(["summary"]) == 2
    with pytest.raises(SystemExit):
        main(["summary", "--format", "nope", str(datasets.online_boutique_path())])


@pytest.mark.filterwarnings("ignore::bayesperf.models.ConvergenceWarning")
def test_fit_demo_prints_intervals_and_saves(capsys, tmp_path):
    path = tmp_path / "model.nc"
    code = main(
        ["fit", "--demo", "--draws", "200", "--tune", "200", "--chains", "2", "-o", str(path)]
    )
    text = capsys.readouterr().out
    assert code in (0, 3)  # 3: a convergence check failed (short chains)
    assert "Posterior latency (ms): median and 90% equal-tailed interval" in text
    assert "p99_lower" in text and "(all)" in text and "Convergence" in text
    import bayesperf

    assert len(bayesperf.load(path).summary()) == 22  # 21 pairs + overall


def test_report_needs_traces_or_demo(capsys, tmp_path):
    assert main(["report", "-o", str(tmp_path)]) == 2
    assert "give trace files or --demo" in capsys.readouterr().err
    assert not (tmp_path / "report.html").exists()


def test_report_rejects_bad_options(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["report", "--demo", "--components", "0"])
    assert exc.value.code == 2
    assert "positive integer or 'auto'" in capsys.readouterr().err
    assert main(["report", "--demo", "--draws", "0", "-o", str(tmp_path)]) == 2
    assert "draws must be an integer >= 1" in capsys.readouterr().err


def test_report_is_listed_with_its_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal
    assert "--quick" in text and "--components" in text and "3: a convergence" in text


def test_family_names_agree_with_the_models():
    """The CLI spells the families without importing the models; they must agree."""
    from bayesperf.cli import LATENCY_FAMILIES
    from bayesperf.models.latency import FAMILIES, LatencyModel
    from bayesperf.report import ReportOptions

    assert LATENCY_FAMILIES == FAMILIES
    assert ReportOptions().family == LatencyModel().family == FAMILIES[0]


def test_what_if_prints_today_after_and_the_ranking(capsys, tmp_path):
    out_csv = tmp_path / "what_if.csv"
    args = ["what-if", "--demo", "--n-draws", "20"]
    args += ["--n-requests", "1000", "--scale", "currencyservice=0.5"]
    args += ["--call-prob", "frontend:adservice=0.3", "--attribution", "--csv", str(out_csv)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "End-to-end latency (ms) per entry point: median [90% credible interval]" in text
    assert "P(better by >10%)" in text and "Where to optimise first" in text
    table = pd.read_csv(out_csv, index_col=[0, 1, 2])
    assert table.index.get_level_values("quantile").tolist() == ["p50", "p95", "p99"]
    assert (table["change_median"] < 0).all()  # faster currency calls, fewer ad calls


def test_what_if_needs_a_change_and_known_services(capsys):
    assert main(["what-if", "--demo"]) == 2
    assert "at least one --scale" in capsys.readouterr().err
    args = ["what-if", "--demo", "--n-draws", "5"]
    assert main([*args, "--n-requests", "100", "--scale", "nope=0.5"]) == 2
    assert "no service 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["what-if", "--demo", "--scale", "frontend"])
    assert "expected SERVICE=NUMBER" in capsys.readouterr().err
