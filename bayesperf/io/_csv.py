"""CSV reading shared by the CSV-based formats: fast, and with errors that name the file."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bayesperf.errors import TraceFormatError
from bayesperf.io.registry import read_head


def header(path: Path) -> list[str]:
    """Column names on a CSV file's first line (empty list if it has none)."""
    first = read_head(path, 16 * 1024).split(b"\n", 1)[0].decode("utf-8", "replace")
    try:
        return [c.strip() for c in next(csv.reader(io.StringIO(first)))]
    except StopIteration:
        return []


def line_of_row(i: int) -> str:
    """Location of data row ``i`` (0-based) in a CSV file with one header line."""
    return f"line {i + 2}"


def read_csv(
    path: Path, *, required: Sequence[str], optional: Sequence[str] = (), text: Sequence[str] = ()
) -> pd.DataFrame:
    """Read the named columns of a CSV file with pyarrow.

    Parameters
    ----------
    path : Path
        The file (``.gz`` is decompressed).
    required : sequence of str
        Columns that must be in the header; a clear error names the missing ones.
    optional : sequence of str
        Columns read when present.
    text : sequence of str
        Columns to read as strings whatever they look like (ids: ``"0012"`` stays).
    """
    names = header(path)
    if not names:
        raise TraceFormatError("file is empty", source=path, expected="a CSV header line")
    missing = [c for c in required if c not in names]
    if missing:
        raise TraceFormatError(
            f"missing required column(s) {missing}; the header has {names}",
            source=path,
            where="line 1 (header)",
            expected=f"columns {list(required)}",
        )
    usecols = [c for c in (*required, *optional) if c in names]
    try:
        frame = pd.read_csv(
            path,
            engine="pyarrow",
            usecols=usecols,
            dtype={c: "str" for c in text if c in usecols},
        )
    except Exception as exc:  # pyarrow raises ArrowInvalid, gzip raises EOFError, ...
        raise TraceFormatError(
            f"cannot parse CSV: {exc}".strip(), source=path, expected="a well-formed CSV file"
        ) from exc
    return frame
