"""Readers: real trace formats in, one canonical span table out.

Examples
--------
>>> import bayesperf
>>> spans = bayesperf.read_traces("traces/*.csv")          # doctest: +SKIP
>>> print(spans.attrs["read_report"])                        # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable

import pandas as pd

from bayesperf.errors import TraceFormatError

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
from bayesperf.io.registry import (
    FORMATS,
    TraceFormat,
    detect_format,
    expand_sources,
    get_format,
)
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
    fmt = None if format == "auto" else get_format(format)
    if isinstance(source, pd.DataFrame):
        fmt = fmt or get_format("csv")
        if fmt.name not in _FRAME_FORMATS:
            raise TraceFormatError(
                f"a DataFrame cannot be read as {fmt.name!r}",
                source="<DataFrame>",
                expected=f"format 'auto' or one of {sorted(_FRAME_FORMATS)}",
            )
        _check_options(fmt, options)
        return build_span_table([fmt.read(source, **options)], format=fmt.name)

    paths = expand_sources(source)
    if fmt is None:
        formats = {path: detect_format(path) for path in paths}
        if len({f.name for f in formats.values()}) > 1:
            listing = ", ".join(f"{p.name}: {f.name}" for p, f in formats.items())
            raise TraceFormatError(
                f"sources are in different formats ({listing})",
                expected="one format per call; read each format separately",
            )
        fmt = next(iter(formats.values()))
    _check_options(fmt, options)
    raws: list[RawSpans] = [fmt.read(path, **options) for path in paths]
    return build_span_table(raws, format=fmt.name)


#: Formats that read an in-memory DataFrame.
_FRAME_FORMATS = ("csv", "span-csv")


def _check_options(fmt: TraceFormat, options: dict) -> None:
    """Reject options the format's reader does not take, naming the ones it does."""
    params = inspect.signature(fmt.read).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TraceFormatError(
            f"format {fmt.name!r} takes no option(s) {unknown}",
            where="options",
            expected=f"options among {accepted}" if accepted else "no options",
        )
