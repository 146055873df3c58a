"""CSV reading shared by the CSV-based formats: fast, exact, and with errors that name the file."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from bayesperf.errors import TraceFormatError
from bayesperf.io.registry import open_binary, read_head

# Nullable integers keep int64 nanosecond times exact when a cell is empty.
_TYPES = {pa.int64(): pd.Int64Dtype()}.get


def header(path: Path) -> list[str]:
    """Column names on a CSV file's first line (empty list if it has none)."""
    first = read_head(path, 16 * 1024).split(b"\n", 1)[0].decode("utf-8", "replace")
    try:
        return [c.strip() for c in next(csv.reader(io.StringIO(first)))]
    except StopIteration:
        return []


def row_locator(path: Path) -> Callable[[int], str]:
    """Map a data-row position to its line number, counting the blank lines pyarrow skips.

    The file is scanned only when a message needs a line number.
    """

    def locate(i: int) -> str:
        with open_binary(path) as fh:
            rows = -2  # so that the header line brings it to -1: it is not a data row
            for number, line in enumerate(fh, start=1):
                if line.strip():
                    rows += 1
                    if rows == i:
                        return f"line {number}"
        return f"data row {i + 1}"

    return locate


def read_csv(
    path: Path,
    *,
    required: Sequence[str],
    optional: Sequence[str] = (),
    text: Sequence[str] = (),
    categorical: Sequence[str] = (),
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
    categorical : sequence of str
        Low-cardinality text columns (services, operations) to dictionary-encode while
        parsing: they arrive categorical, without a string per row.

    Returns
    -------
    pandas.DataFrame
        Integer columns as nullable ``Int64`` (an empty cell is missing, not an error).
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
    options = pacsv.ConvertOptions(
        include_columns=usecols,
        column_types={
            **{c: pa.string() for c in text if c in usecols},
            **{c: pa.dictionary(pa.int32(), pa.string()) for c in categorical if c in usecols},
        },
    )
    try:
        # A path (not a file object) lets pyarrow read with all cores; it decompresses
        # .gz by the extension.
        table = pacsv.read_csv(str(path), convert_options=options)
    except Exception as exc:  # pyarrow raises ArrowInvalid, gzip raises EOFError, ...
        where = _bad_line(path, len(names)) or _first_line_not_utf8(path)
        raise TraceFormatError(
            f"cannot parse CSV: {exc}".strip(),
            source=path,
            where=where,
            expected="a well-formed CSV file",
        ) from exc
    binary = [f.name for f in table.schema if pa.types.is_binary(f.type)]
    if binary:  # pyarrow keeps text that is not UTF-8 as bytes
        raise TraceFormatError(
            f"column(s) {binary} hold text that is not UTF-8",
            source=path,
            where=_first_line_not_utf8(path),
            expected="a UTF-8 encoded CSV file",
        )
    return table.to_pandas(types_mapper=_TYPES)


def _first_line_not_utf8(path: Path) -> str | None:
    """The first line that does not decode as UTF-8, if the file can be scanned."""
    try:
        with open_binary(path) as fh:
            for number, line in enumerate(fh, start=1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    return f"line {number}"
    except Exception:  # a truncated or broken gzip: the parse error says enough
        return None
    return None


def _bad_line(path: Path, n_fields: int) -> str | None:
    """First line whose field count differs from the header's, if the file can be scanned."""
    try:
        with open_binary(path) as fh:
            lines = io.TextIOWrapper(fh, encoding="utf-8", errors="replace", newline="")
            for number, row in enumerate(csv.reader(lines), start=1):
                if row and len(row) != n_fields:
                    return f"line {number}"
    except Exception:  # a truncated or undecodable file: the parse error says enough
        return None
    return None
