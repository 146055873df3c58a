import gzip

import pandas as pd

from bayesperf import datasets


def test_bundled_online_boutique_matches_its_raw_file():
    path = datasets.online_boutique_path()
    assert path.is_file()
    assert (path.parent / "LICENSE-nezha").is_file()
    with gzip.open(path, "rt") as fh:
        raw = pd.read_csv(fh, dtype={"SpanID": str, "TraceID": str, "ParentID": str})
    spans = datasets.load_online_boutique()
    report = spans.attrs["read_report"]
    assert report.records == len(raw) == 22969
    assert report.kept == len(spans) == 22969
    assert spans["trace_id"].nunique() == raw["TraceID"].nunique() == 502
    # Durations are microseconds in the file and milliseconds in the table.
    first = raw.iloc[0]
    row = spans[(spans.trace_id == first.TraceID) & (spans.span_id == first.SpanID)]
    assert row["latency"].item() == first.Duration / 1000
    services = raw["PodName"].str.rsplit("-", n=2).str[0]
    assert set(spans["service"].astype(str)) == set(services)
