"""Turn what a format reader parsed into the canonical span table.

One place for what every reader needs: type coercion with errors that name the row,
dropping (and counting) unusable rows, de-duplication across files, deriving ``caller``
from parent links, and the final dtypes. Readers only map their format onto canonical
column names, in canonical units (milliseconds, UTC).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bayesperf import schema as S
from bayesperf.errors import TraceFormatError, TraceReadWarning
from bayesperf.io import report as R

#: Columns every reader must produce.
REQUIRED = (S.TRACE_ID, S.SERVICE, S.LATENCY)


def _record(i: int) -> str:
    return f"record {i}"


@dataclass
class RawSpans:
    """A reader's output for one source, in canonical names and units, not yet cleaned.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per span record, columns a subset of :data:`bayesperf.schema.SPAN_COLUMNS`
        (``trace_id``, ``service`` and ``latency`` at least). ``latency`` is in ms and may
        hold NaN for a missing duration; ``start_time`` is int64 ns or datetime.
    source : str
        File name, for messages and the report.
    dropped : Counter
        Records the reader itself had to drop, by reason (they never became rows).
    flagged : dict of str to boolean array
        Rows that are usable but incomplete, by reason (e.g. a caller the format left
        unrecorded): one mask over ``frame``'s rows per reason. Counted among kept rows.
    locate : callable
        Maps a row position to a location for messages (``"line 12"``, ``"spans[3]"``).
    """

    frame: pd.DataFrame
    source: str
    dropped: Counter[str] = field(default_factory=Counter)
    flagged: dict[str, np.ndarray] = field(default_factory=dict)
    locate: Callable[[int], str] = _record

    @property
    def records(self) -> int:
        """Raw records this source held."""
        return len(self.frame) + sum(self.dropped.values())


def coerce(raw: RawSpans) -> pd.DataFrame:
    """Check required columns and convert types, naming the first bad row on failure.

    Returns a frame with canonical columns whose types are settled (strings for ids,
    float ms for latency, UTC datetimes for start time) but rows not yet filtered.
    Start times beyond what ``datetime64[ns]`` holds become missing and are flagged
    in ``raw.flagged`` (``start_time_out_of_range``).
    """
    frame = raw.frame
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise TraceFormatError(
            f"missing required column(s) {missing}; found {list(frame.columns)}",
            source=raw.source,
            where="columns",
            expected=f"columns {list(REQUIRED)}",
        )
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    for col in (S.TRACE_ID, S.SPAN_ID, S.PARENT_ID):
        if col in frame.columns:
            out[col] = _as_str(frame[col])
    for col in (S.SERVICE, S.OPERATION, S.CALLER, S.CALLEE):
        if col in frame.columns:
            out[col] = _as_name(frame[col])
    out[S.LATENCY] = as_float(frame[S.LATENCY], S.LATENCY, raw.source, raw.locate)
    if S.START_TIME in frame.columns:
        out[S.START_TIME], out_of_range = _as_time(frame[S.START_TIME], raw)
        if out_of_range.any():
            previous = raw.flagged.get(R.START_TIME_OUT_OF_RANGE, False)
            raw.flagged[R.START_TIME_OUT_OF_RANGE] = out_of_range | previous
    if S.ERROR in frame.columns:
        out[S.ERROR] = _as_bool(frame[S.ERROR], raw)
    return out


def to_ns(
    col: pd.Series, factor: int, name: str, source: str, locate: Callable[[int], str]
) -> pd.Series:
    """Times counted in units of ``factor`` ns, as nanoseconds; missing cells stay missing.

    Integer columns stay integers (nullable ``Int64``: exact, where float64 ns loses
    ~256 ns) unless a value would overflow int64 ns; then the column is float and
    :func:`build_span_table` flags the times it cannot hold.

    Examples
    --------
    >>> to_ns(pd.Series([1, None], dtype="Int64"), 1_000, "ts", "t.csv", str).tolist()
    [1000, <NA>]
    """
    if pd.api.types.is_integer_dtype(col):
        ints = col.astype("Int64")
        if not (ints.abs() > _INT64_MAX // factor).any():
            return ints * factor
    return as_float(col, name, source, locate) * factor


def _as_str(col: pd.Series) -> pd.Series:
    values = col.to_numpy() if isinstance(col.dtype, pd.CategoricalDtype) else col
    out = pd.Series(values, index=col.index).astype("str")
    # Empty strings are missing values in every trace format. In Arrow (the storage of
    # "str"), not through pandas' ``where``, which costs 10x more.
    text = pa.chunked_array(pa.array(out))
    empty = pc.equal(text, "")
    if not pc.any(empty).as_py():
        return out
    text = pc.if_else(empty, pa.scalar(None, text.type), text)
    return pd.Series(pd.array(text, dtype="str"), index=col.index)


def _as_name(col: pd.Series) -> pd.Series:
    """Names as strings; categorical columns stay categorical.

    One string per category, not per row: 10^7-span Parquet tables read ~40% faster and
    ~700 MB smaller. Categories are made unique, ``""`` (a missing name) is removed;
    their order is left to :func:`_canonical`, which sets one category set for all.
    """
    if not isinstance(col.dtype, pd.CategoricalDtype):
        return _as_str(col)
    labels = col.cat.categories
    if labels.dtype == "str" and labels.is_unique and "" not in labels:
        return col  # as Arrow dictionaries and pandas categoricals of text arrive
    names, rank = np.unique(labels.astype("str").to_numpy(dtype=object), return_inverse=True)
    if len(names) and names[0] == "":  # an empty name is a missing value
        rank, names = rank - 1, names[1:]
    return pd.Series(_recode(col, rank, pd.Index(names, dtype="str")), index=col.index)


def _recode(col: pd.Series, new_code: np.ndarray, categories: pd.Index) -> pd.Categorical:
    """A categorical column on other categories: category ``i`` becomes ``new_code[i]``.

    One look-up per row in a table of a few entries (-1 = missing).
    """
    # The missing code -1 indexes the table's last entry, -1. Codes in the smallest type
    # that holds them, as pandas keeps them: no second copy.
    lookup = np.append(new_code, -1).astype(np.min_scalar_type(-len(categories) - 1))
    return pd.Categorical.from_codes(lookup[col.cat.codes.to_numpy()], categories)


def as_float(col: pd.Series, name: str, source: str, locate: Callable[[int], str]) -> pd.Series:
    """Convert a column to float64; text that is not a number is an error naming the row."""
    if pd.api.types.is_bool_dtype(col.dtype):
        raise TraceFormatError(
            f"column {name!r} is boolean", source=source, where=name, expected="numbers"
        )
    if pd.api.types.is_numeric_dtype(col.dtype):
        return col.astype("float64")
    converted = pd.to_numeric(col, errors="coerce")
    bad = converted.isna() & col.notna() & (col.astype("str").str.strip() != "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise TraceFormatError(
            f"{name} value {col.iloc[i]!r} is not a number ({int(bad.sum())} such rows)",
            source=source,
            where=locate(i),
            expected=f"a numeric {name}",
        )
    return converted.astype("float64")


#: Float nanoseconds at or beyond this magnitude do not fit int64 (nor datetime64[ns]).
_NS_LIMIT = 2.0**63
_INT64_MAX = 2**63 - 1


def _as_time(col: pd.Series, raw: RawSpans) -> tuple[pd.Series, np.ndarray]:
    """UTC datetimes from datetimes or Unix nanoseconds, and the rows out of range.

    Fractional nanoseconds are rounded; times that ``datetime64[ns]`` cannot hold (and
    infinities) become missing, and the second value marks them.
    """
    none = np.zeros(len(col), dtype=bool)
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        return col.dt.tz_convert("UTC").astype(S.SPAN_DTYPES[S.START_TIME]), none
    if pd.api.types.is_datetime64_dtype(col.dtype):
        return col.dt.tz_localize("UTC").astype(S.SPAN_DTYPES[S.START_TIME]), none
    if pd.api.types.is_signed_integer_dtype(col):
        # Every int64 is a datetime64[ns] (its minimum is NaT, as to_datetime has it).
        ns = col.to_numpy(dtype=np.int64, na_value=np.iinfo(np.int64).min)
        return pd.Series(ns.view("M8[ns]"), index=col.index).dt.tz_localize("UTC"), none
    if pd.api.types.is_integer_dtype(col):
        too_big = np.asarray((col > _INT64_MAX).fillna(False), dtype=bool)  # unsigned ints
        ints = col.where(~too_big).astype("Int64") if too_big.any() else col
        return pd.to_datetime(ints, unit="ns", utc=True), too_big
    values = as_float(col, S.START_TIME, raw.source, raw.locate).to_numpy(dtype="float64")
    out_of_range = ~(np.abs(values) < _NS_LIMIT) & ~np.isnan(values)
    rounded = np.round(np.where(out_of_range | np.isnan(values), 0.0, values)).astype(np.int64)
    ns = pd.array(rounded, dtype="Int64")
    ns[out_of_range | np.isnan(values)] = pd.NA
    return pd.to_datetime(pd.Series(ns, index=col.index), unit="ns", utc=True), out_of_range


def _as_bool(col: pd.Series, raw: RawSpans) -> pd.Series:
    if pd.api.types.is_bool_dtype(col.dtype):
        return col.astype("boolean")
    if pd.api.types.is_numeric_dtype(col.dtype):
        return col.astype("Float64").ne(0).astype("boolean")
    text = col.astype("str").str.strip().str.lower()
    truth = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    mapped = text.map(truth)
    bad = mapped.isna() & text.notna() & (text != "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise TraceFormatError(
            f"error value {col.iloc[i]!r} is not a boolean",
            source=raw.source,
            where=raw.locate(i),
            expected="true/false or 1/0",
        )
    return mapped.astype("boolean")


def build_span_table(raws: list[RawSpans], *, format: str) -> pd.DataFrame:
    """Clean, merge and finalise the output of one reader over one or more sources.

    Drops (and counts) rows with a missing, non-finite or negative latency, a missing
    trace id or service, and duplicate ``(trace_id, span_id)`` spans (across sources:
    overlapping files repeat spans). Derives ``caller`` from parent links when the
    format has none, flagging spans whose parent is absent. The result carries a
    :class:`~bayesperf.io.report.ReadReport` in ``attrs["read_report"]``.
    """
    report = R.ReadReport(format=format, sources=[r.source for r in raws])
    for raw in raws:
        report.records += raw.records
        report.dropped.update(raw.dropped)
    if report.records == 0:
        raise TraceFormatError(
            "no span records in the input",
            source=", ".join(report.sources),
            expected="at least one span",
        )
    frames = [coerce(raw) for raw in raws]
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    flags = pd.concat([_flags(raw) for raw in raws], ignore_index=True).fillna(False)

    keys = _SpanKeys.of(frame)
    # Callers come from all records, before any is dropped: a parent whose own duration
    # is missing still names its children's caller.
    if S.CALLER not in frame.columns:
        frame[S.CALLER], flags[R.PARENT_MISSING] = _callers_from_parents(frame, keys)

    drops = [
        (frame[S.LATENCY].isna(), R.MISSING_LATENCY),
        (~np.isfinite(frame[S.LATENCY]) & frame[S.LATENCY].notna(), R.NON_FINITE_LATENCY),
        (frame[S.LATENCY] < 0, R.NEGATIVE_LATENCY),
        (frame[S.TRACE_ID].isna(), R.MISSING_TRACE_ID),
        (frame[S.SERVICE].isna(), R.MISSING_SERVICE),
    ]
    keep = np.ones(len(frame), dtype=bool)
    for mask, reason in drops:
        mask = np.asarray(mask, dtype=bool) & keep
        report.dropped[reason] += int(mask.sum())
        keep &= ~mask
    if keys is not None and keys.span_key is not None:
        # Among usable rows, a repeated (trace_id, span_id) is a duplicate: first one wins.
        dup = keep & (keys.span_key >= 0)
        dup[dup] = pd.Series(keys.span_key[dup]).duplicated().to_numpy()
        report.dropped[R.DUPLICATE_SPAN] += int(dup.sum())
        keep &= ~dup
    if not keep.all():
        frame, flags = frame.loc[keep].reset_index(drop=True), flags.loc[keep]
    if S.SPAN_ID not in frame.columns:
        # Flat formats have no span ids: number the spans within each trace.
        frame[S.SPAN_ID] = frame.groupby(S.TRACE_ID, sort=False).cumcount().astype("str")
    if S.CALLEE not in frame.columns:
        frame[S.CALLEE] = frame[S.SERVICE]

    report.dropped = +report.dropped  # no zero entries
    report.flagged.update({k: int(v) for k, v in flags.sum().items() if v})
    report.kept = len(frame)
    report.check()
    _check_kept(report)
    table = _canonical(frame)
    table.attrs["read_report"] = report
    return table


#: What a source needs so that rows are not dropped for each reason (for messages).
_DROP_FIXES = {
    R.MISSING_LATENCY: "a duration (or start and end times) on every span",
    R.NON_FINITE_LATENCY: "finite durations",
    R.NEGATIVE_LATENCY: "durations >= 0",
    R.MISSING_TRACE_ID: "a trace id on every span",
    R.MISSING_SERVICE: "a service name on every span",
    R.DUPLICATE_SPAN: "each (trace_id, span_id) once",
}


def _check_kept(report: R.ReadReport) -> None:
    """Raise when a read kept no row; warn when it kept fewer than half of its records."""
    if 2 * report.kept >= report.records:
        return
    reason, _ = report.dominant_drop() or ("", 0)
    drops = ", ".join(
        f"{k}: {v}" for k, v in sorted(report.dropped.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    sources = report.sources
    where = ", ".join(sources[:3]) + (f" and {len(sources) - 3} more" if len(sources) > 3 else "")
    fix = _DROP_FIXES.get(reason, "usable span records")
    if report.kept == 0:
        raise TraceFormatError(
            f"none of the {report.records} span records is usable, mostly {reason} "
            f"(dropped {drops})",
            source=where,
            expected=fix,
        )
    warnings.warn(
        f"{where}: kept only {report.kept} of {report.records} span records, mostly dropped "
        f"as {reason} (dropped {drops}; expected {fix})",
        TraceReadWarning,
        stacklevel=4,
    )


def _flags(raw: RawSpans) -> pd.DataFrame:
    """A reader's flag masks as boolean columns, so they follow the rows through drops."""
    return pd.DataFrame(
        {reason: np.asarray(mask, dtype=bool) for reason, mask in raw.flagged.items()},
        index=pd.RangeIndex(len(raw.frame)),
    )


@dataclass(frozen=True)
class _SpanKeys:
    """Who is who among the spans: keys for de-duplication, each span's parent row.

    Attributes
    ----------
    span_key : ndarray of int64 or None
        One integer per ``(trace_id, span_id)`` (-1 = a missing id), or None when every
        span id occurs once: then there is nothing to de-duplicate.
    parent_row : ndarray of int64 or None
        Row of each span's parent among the usable spans (same trace, a service; the
        first record of a repeated span), -1 where there is none; None unless callers
        are derived from parent links.
    has_parent : ndarray of bool or None
        Whether the span names a parent (and a trace).
    """

    span_key: np.ndarray | None
    parent_row: np.ndarray | None = None
    has_parent: np.ndarray | None = None

    @classmethod
    def of(cls, frame: pd.DataFrame) -> _SpanKeys | None:
        if S.SPAN_ID not in frame.columns:
            return None
        needs_parents = S.PARENT_ID in frame.columns and S.CALLER not in frame.columns
        words = _id_words(frame[S.SPAN_ID])
        if words is not None:
            folded = _HashBuckets(_fold(words))
            if folded.is_unique():  # every span id occurs once (random 64-bit ids)
                if not needs_parents:
                    return cls(span_key=None)
                parents = _parent_rows_of_distinct_spans(frame, words, folded)
                if parents is not None:
                    return cls(None, *parents)
        return cls._factorized(frame, needs_parents)

    @classmethod
    def _factorized(cls, frame: pd.DataFrame, needs_parents: bool) -> _SpanKeys:
        """The exact keys for any ids, by factorising the id strings (~5x slower).

        One factorisation of span and parent ids together makes de-duplication and
        parent look-ups integer operations (string MultiIndexes cost ~10x more).
        """
        n = len(frame)
        parent = frame[S.PARENT_ID] if needs_parents else None
        ids = frame[S.SPAN_ID] if parent is None else pd.concat([frame[S.SPAN_ID], parent])
        codes, uniques = pd.factorize(ids)
        span = codes[:n]
        if parent is None and len(uniques) == int((span >= 0).sum()):
            return cls(span_key=None)  # every span id occurs once
        trace, _ = pd.factorize(frame[S.TRACE_ID])
        width = np.int64(len(uniques) + 1)

        def key(c: np.ndarray) -> np.ndarray:
            return np.where((c >= 0) & (trace >= 0), trace.astype(np.int64) * width + c, -1)

        span_key = key(span)
        if parent is None:
            return cls(span_key=span_key)
        parent_key = key(codes[n:])
        usable = np.flatnonzero((span_key >= 0) & frame[S.SERVICE].notna().to_numpy())
        known = pd.Index(span_key[usable])
        first = ~known.duplicated()  # a repeated span: its first record names the service
        position = known[first].get_indexer(parent_key)
        parent_row = np.full(n, -1, dtype=np.int64)
        parent_row[position >= 0] = usable[first][position[position >= 0]]
        return cls(span_key, parent_row, parent_key >= 0)


def _parent_rows_of_distinct_spans(
    frame: pd.DataFrame, words: np.ndarray, folded: _HashBuckets
) -> tuple[np.ndarray, np.ndarray] | None:
    """Parent rows when every span id occurs once, from the folded ids (see ``_SpanKeys``).

    A parent id is looked up among the spans' folded ids; a match stands when the ids'
    bytes are equal (folding is not one-to-one) and the two spans share a trace. Ids
    that fold alike but differ answer None, for the exact path.
    """
    parents = pa.chunked_array(pa.array(frame[S.PARENT_ID]))
    # A parent id of another length than the span ids matches none of them.
    width = len(frame[S.SPAN_ID].iloc[0].encode())
    comparable = pc.fill_null(pc.equal(pc.binary_length(parents), width), False).to_numpy()
    rows = np.flatnonzero(comparable)
    parent_words = _id_words(parents.filter(pa.array(comparable)))
    if parent_words is None:  # no parent id of the spans' length
        parent_words = np.zeros((0, words.shape[1]), dtype=np.uint64)
    candidate = folded.get_indexer(_fold(parent_words))
    matched = candidate >= 0
    rows, candidate = rows[matched], candidate[matched]
    # Equal folds and equal words but the last imply an equal last word (the fold is
    # invertible in it), so the last word needs no check.
    if not np.array_equal(words[candidate, :-1], parent_words[matched, :-1]):
        return None
    trace, _ = pd.factorize(frame[S.TRACE_ID])
    found = (trace[candidate] == trace[rows]) & frame[S.SERVICE].notna().to_numpy()[candidate]
    parent_row = np.full(len(frame), -1, dtype=np.int64)
    parent_row[rows[found]] = candidate[found]
    has_parent = frame[S.PARENT_ID].notna().to_numpy() & (trace >= 0)
    return parent_row, has_parent


#: Odd 64-bit multiplier (the golden ratio's) that mixes the words of an id.
_MIX = np.uint64(0x9E3779B97F4A7C15)
#: Offset types of Arrow's string layouts (pandas' "str" is ``large_string``).
_OFFSETS = {pa.string(): np.int32, pa.large_string(): np.int64}


def _id_words(ids: pd.Series | pa.ChunkedArray) -> np.ndarray | None:
    """Ids of one byte length as rows of 64-bit words (zero-padded): equal ids, equal rows.

    Trace exporters write span ids of a fixed width (16 hex digits for W3C, Jaeger,
    Zipkin and OTLP): as integers they are compared and hashed several times faster
    than as strings. None when an id is missing or the lengths differ.
    """
    text = ids if isinstance(ids, pa.ChunkedArray) else pa.chunked_array(pa.array(ids))
    offset_type = _OFFSETS.get(text.type)
    if text.null_count or not len(text) or offset_type is None:
        return None
    lengths = pc.min_max(pc.binary_length(text)).as_py()
    width = lengths["min"]
    if width != lengths["max"] or width == 0:
        return None
    out = np.zeros((len(text), -(-width // 8) * 8), dtype=np.uint8)
    row = 0
    for chunk in text.chunks:
        n = len(chunk)
        if not n:
            continue
        # Equal lengths: the ids lie back to back from the first one's offset.
        first = int(np.frombuffer(chunk.buffers()[1], dtype=offset_type)[chunk.offset])
        data = np.frombuffer(chunk.buffers()[2], dtype=np.uint8, count=n * width, offset=first)
        out[row : row + n, :width] = data.reshape(n, width)
        row += n
    return out.view(np.uint64)


def _fold(words: np.ndarray) -> np.ndarray:
    """One uint64 per row of words (equal rows, equal integers; not one-to-one)."""
    folded = words[:, 0].copy()
    for j in range(1, words.shape[1]):
        folded = folded * _MIX + words[:, j]
    return folded


class _HashBuckets:
    """Integers split into buckets by mixed high bits, hashed one bucket at a time.

    A hash table of 10^7 keys does not fit in the CPU caches, and every insert or
    look-up misses: one table per bucket of 1/256 of the keys is 3-4x faster there.
    The split costs a radix sort of one byte per key.
    """

    #: Below this many keys, one bucket (the loop over buckets would cost more).
    MIN_SPLIT = 1 << 16

    def __init__(self, values: np.ndarray) -> None:
        self.n_buckets = 256 if len(values) >= self.MIN_SPLIT else 1
        self.order, self.bounds = self._split(values)
        self.values = values[self.order]

    def _split(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions sorted by bucket (a stable radix sort on one byte), bucket bounds."""
        if self.n_buckets == 1:
            return np.arange(len(values)), np.array([0, len(values)])
        # The high byte of the product depends on every bit of the value.
        bucket = ((values * _MIX) >> np.uint64(56)).astype(np.uint8)
        order = np.argsort(bucket, kind="stable")
        return order, np.searchsorted(bucket[order], np.arange(self.n_buckets + 1))

    def _buckets(self, values: np.ndarray, bounds: np.ndarray):
        for b in range(self.n_buckets):
            yield b, values[bounds[b] : bounds[b + 1]]

    def is_unique(self) -> bool:
        """Whether no value occurs twice."""
        return all(pd.Index(v).is_unique for _, v in self._buckets(self.values, self.bounds))

    def get_indexer(self, targets: np.ndarray) -> np.ndarray:
        """Position of each target among the values (-1: absent); values must be unique."""
        order, bounds = self._split(targets)
        out = np.full(len(targets), -1, dtype=np.int64)
        for b, wanted in self._buckets(targets[order], bounds):
            lo = self.bounds[b]
            found = pd.Index(self.values[lo : self.bounds[b + 1]]).get_indexer(wanted)
            rows = order[bounds[b] : bounds[b + 1]]
            out[rows[found >= 0]] = self.order[lo + found[found >= 0]]
        return out


def _callers_from_parents(
    frame: pd.DataFrame, keys: _SpanKeys | None
) -> tuple[pd.Series, np.ndarray]:
    """Service of each span's parent, and whether a named parent is absent from the data.

    Works on the service column's codes: no string per span is made.
    """
    n = len(frame)
    if keys is None or keys.parent_row is None:
        return pd.Series(None, index=frame.index, dtype="str"), np.zeros(n, bool)
    service = frame[S.SERVICE]
    if isinstance(service.dtype, pd.CategoricalDtype):
        codes, names = service.cat.codes.to_numpy(), service.cat.categories
    else:
        codes, names = pd.factorize(service)
        names = pd.Index(names, dtype="str")
    found = keys.parent_row >= 0
    callers = np.where(found, codes[np.maximum(keys.parent_row, 0)], -1)
    caller = pd.Series(pd.Categorical.from_codes(callers, names), index=frame.index)
    return caller, keys.has_parent & ~found


def _categorical(values: pd.Series, categories: pd.Index) -> pd.Categorical:
    """``pd.Categorical(values, categories)``, via the column's own categories or factorize.

    Re-coding a categorical touches each row once, through a look-up table; text is
    factorised (5x faster than ``pd.Categorical`` on Arrow strings).
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        if values.cat.categories.equals(categories):
            return values.array
        return _recode(values, categories.get_indexer(values.cat.categories), categories)
    codes, uniques = pd.factorize(values)
    mapping = np.append(categories.get_indexer(uniques), -1)  # code -1 (missing) stays -1
    return pd.Categorical.from_codes(mapping[codes], categories)


def _names_in_use(col: pd.Series) -> np.ndarray:
    """The distinct names a service column holds (categories that no row uses left out)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        counts = np.bincount(col.cat.codes.to_numpy() + 1, minlength=len(col.cat.categories) + 1)
        return col.cat.categories.to_numpy(dtype=object)[counts[1:] > 0]
    return pd.unique(col.dropna()).astype(object)


def _missing(col: str, n: int) -> pd.api.extensions.ExtensionArray:
    """An all-missing column of canonical dtype (for what a format does not record)."""
    if col == S.START_TIME:
        return pd.Series(pd.NaT, index=pd.RangeIndex(n), dtype=S.SPAN_DTYPES[col]).array
    if col == S.ERROR:
        return pd.arrays.BooleanArray(np.zeros(n, dtype=bool), np.ones(n, dtype=bool))
    if col == S.OPERATION:
        return pd.Categorical.from_codes(np.full(n, -1, np.int8), pd.Index([], dtype="str"))
    return pd.array(pa.nulls(n, pa.string()), dtype="str")


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns in canonical order and dtypes; one category set for all service columns."""
    n = len(frame)
    names = [_names_in_use(frame[c]) for c in S.SERVICE_COLUMNS if c in frame.columns]
    categories = pd.Index(sorted(set().union(*names)), dtype="str")
    columns = {}
    for col in S.SPAN_COLUMNS:
        if col not in frame.columns:
            values = _missing(col, n)
            if col in S.SERVICE_COLUMNS:
                values = pd.Categorical.from_codes(np.full(n, -1, np.int8), categories)
        elif col in S.SERVICE_COLUMNS:
            values = _categorical(frame[col], categories)
        elif col == S.OPERATION:
            values = frame[col].astype("category").array
        else:
            values = frame[col].astype(S.SPAN_DTYPES[col]).array
        columns[col] = values
    return pd.DataFrame(columns, index=pd.RangeIndex(n), copy=False)
