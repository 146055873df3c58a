"""The trace formats bayesperf reads, and how a file's format is recognised.

Each format module registers one :class:`TraceFormat`; :func:`bayesperf.read_traces`
looks formats up here by name, or asks each one's ``sniff`` in registration order.
Adding a format is one new module that calls :func:`register` — no list to keep in
step elsewhere.
"""

from __future__ import annotations

import glob
import gzip
import io
import os
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bayesperf.errors import TraceFormatError
from bayesperf.io._table import RawSpans

#: Bytes of a file's start that sniffers see.
HEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class TraceFormat:
    """A readable trace format.

    Attributes
    ----------
    name : str
        The name users pass as ``format=``.
    read : callable
        ``read(path, **options) -> RawSpans`` for one file.
    sniff : callable
        ``sniff(path, head) -> bool``: whether a file whose first bytes (decompressed)
        are ``head`` is in this format.
    description : str
        One line for error messages and docs.
    """

    name: str
    read: Callable[..., RawSpans]
    sniff: Callable[[Path, bytes], bool]
    description: str


FORMATS: dict[str, TraceFormat] = {}


def register(fmt: TraceFormat) -> TraceFormat:
    """Add a format to the registry (one module per format calls this at import)."""
    if fmt.name in FORMATS:
        raise ValueError(f"trace format {fmt.name!r} is registered twice")
    FORMATS[fmt.name] = fmt
    return fmt


def get_format(name: str) -> TraceFormat:
    """Return the registered format called ``name`` or raise a clear error."""
    try:
        return FORMATS[name]
    except KeyError:
        raise TraceFormatError(
            f"unknown trace format {name!r}",
            expected=f"'auto' or one of {sorted(FORMATS)}",
        ) from None


def detect_format(path: Path) -> TraceFormat:
    """Recognise a file's format from its name and first bytes."""
    head = read_head(path)
    if not head.strip():
        raise TraceFormatError("file is empty", source=path, expected="trace data")
    for fmt in FORMATS.values():
        if fmt.sniff(path, head):
            return fmt
    raise TraceFormatError(
        "could not recognise the trace format",
        source=path,
        where="file start",
        expected="one of: "
        + "; ".join(f"{f.name} ({f.description})" for f in FORMATS.values())
        + ". Pass format=... to choose one",
    )


def expand_sources(source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Resolve a path, a glob, a directory or a list of those into existing files."""
    items = [source] if isinstance(source, str | os.PathLike) else list(source)
    if not items:
        raise TraceFormatError("no sources given", expected="a path, a glob or a list of paths")
    paths: list[Path] = []
    for item in items:
        text = os.fspath(item)
        if glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise TraceFormatError("glob matches no file", source=text)
            files = [Path(m) for m in matches if Path(m).is_file()]
            if not files:
                raise TraceFormatError("glob matches no file (only directories)", source=text)
            paths.extend(files)
        elif Path(text).is_dir():
            files = sorted(p for p in Path(text).iterdir() if p.is_file() and _is_data(p))
            if not files:
                raise TraceFormatError("directory holds no trace files", source=text)
            paths.extend(files)
        elif Path(text).is_file():
            paths.append(Path(text))
        else:
            raise TraceFormatError("no such file or directory", source=text)
    return paths


def _is_data(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    return name.endswith((".csv", ".json", ".jsonl", ".ndjson", ".parquet", ".pq"))


def read_head(path: Path, size: int = HEAD_BYTES) -> bytes:
    """First ``size`` bytes of a file, decompressed if it is gzip."""
    try:
        with open_binary(path) as fh:
            return fh.read(size)
    except (EOFError, OSError, zlib.error) as exc:  # truncated or not really gzip
        raise TraceFormatError(
            f"cannot read file: {exc}", source=path, expected="a readable (gzip) file"
        ) from exc


def open_binary(path: Path) -> io.BufferedIOBase:
    """Open a file for reading bytes, transparently decompressing ``.gz``."""
    if Path(path).suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def suffixes(path: Path) -> str:
    """Lower-case file suffixes without a trailing ``.gz`` (``"x.csv.gz"`` -> ``".csv"``)."""
    name = Path(path).name.lower().removesuffix(".gz")
    return Path(name).suffix
