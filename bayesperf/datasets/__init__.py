"""Bundled real traces, for examples, the demo report and quick experiments.

Nothing is downloaded: the files ship inside the package.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

_ONLINE_BOUTIQUE = "online_boutique_2022-08-23_17_00_trace.csv.gz"


def online_boutique_path() -> Path:
    """Path of the bundled Online Boutique traces (Nezha span CSV, gzip).

    Examples
    --------
    >>> online_boutique_path().name
    'online_boutique_2022-08-23_17_00_trace.csv.gz'
    """
    return Path(str(resources.files(__package__) / "data" / _ONLINE_BOUTIQUE))


def load_online_boutique() -> pd.DataFrame:
    """One fault-free minute of Google Online Boutique as a canonical span table.

    22,969 spans in 502 traces over 10 services, from the Nezha dataset (MIT license,
    see ``bayesperf/datasets/data/LICENSE-nezha``).

    Returns
    -------
    pandas.DataFrame
        The canonical span table, with its ``attrs["read_report"]``.

    Examples
    --------
    >>> spans = load_online_boutique()
    >>> len(spans), spans["trace_id"].nunique(), spans["service"].nunique()
    (22969, 502, 10)
    """
    from bayesperf.io import read_traces

    return read_traces(online_boutique_path())
