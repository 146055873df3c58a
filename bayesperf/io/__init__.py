"""Readers: real trace formats in, one canonical span table out.

Examples
--------
>>> import bayesperf
>>> spans = bayesperf.read_traces("traces/*.csv")          # doctest: +SKIP
>>> print(spans.attrs["read_report"])                        # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import pandas as pd

# Format modules register themselves on import; the order is the sniffing order.
from bayesperf.io import (  # noqa: F401  (imported for registration)
    alibaba,
    canonical_csv,
    jaeger,
    otlp,
    parquet,
    span_csv,
    zipkin,
)
from bayesperf.io._table import RawSpans, build_span_table
from bayesperf.io.registry import FORMATS, detect_format, expand_sources, get_format
from bayesperf.io.report import ReadReport

__all__ = ["FORMATS", "ReadReport", "read_traces"]

Source = str | os.PathLike[str] | pd.DataFrame | Iterable[str | os.PathLike[str]]


def read_traces(source: Source, format: str = "auto", **options) -> pd.DataFrame:
    """Read traces into the canonical span table.

    Parameters
    ----------
    source : path, glob, directory, list of paths, or pandas.DataFrame
        Where the traces are. Files may be gzip-compressed. Several files are merged
        into one table and spans repeated across them are dropped (and counted).
        A DataFrame is read as the canonical ``csv`` format, or as ``span-csv`` with a
        ``columns=`` mapping.
    format : str, default "auto"
        ``"auto"`` recognises each file from its name and first bytes; otherwise one of
        ``bayesperf.io.FORMATS``: ``csv``, ``span-csv``, ``jaeger``, ``zipkin``, ``otlp``,
        ``alibaba``, ``parquet``.
    **options
        Passed to the format's reader (for example ``preset="nezha"`` or
        ``columns={...}`` for ``span-csv``).

    Returns
    -------
    pandas.DataFrame
        Columns of :data:`bayesperf.schema.SPAN_COLUMNS`; latency in milliseconds.
        ``attrs["read_report"]`` is a :class:`ReadReport` counting what was kept and
        dropped, by reason.

    Raises
    ------
    TraceFormatError
        Unknown format, malformed or truncated file, missing columns, wrong types, empty
        input. The message names the file, the row or field, and what was expected.

    Examples
    --------
    >>> import bayesperf
    >>> spans = bayesperf.read_traces(bayesperf.datasets.online_boutique_path())
    >>> spans.attrs["read_report"].kept == len(spans)
    True
    """
    if isinstance(source, pd.DataFrame):
        name = "span-csv" if format == "span-csv" else "csv"
        reader = get_format(name)
        raw = reader.read(source, **options)
        return build_span_table([raw], format=name)

    paths = expand_sources(source)
    if format == "auto":
        formats = {path: detect_format(path) for path in paths}
        names = sorted({f.name for f in formats.values()})
        if len(names) > 1:
            from bayesperf.errors import TraceFormatError

            listing = ", ".join(f"{p.name}: {f.name}" for p, f in formats.items())
            raise TraceFormatError(
                f"sources are in different formats ({listing})",
                expected="one format per call; read each format separately",
            )
        fmt = next(iter(formats.values()))
    else:
        fmt = get_format(format)
    raws: list[RawSpans] = [fmt.read(path, **options) for path in paths]
    return build_span_table(raws, format=fmt.name)
