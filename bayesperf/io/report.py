"""What a reader saw, kept and dropped: :class:`ReadReport`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

#: Reasons a reader drops a readable record.
MISSING_LATENCY = "missing_latency"
NEGATIVE_LATENCY = "negative_latency"
DUPLICATE_SPAN = "duplicate_span"
NON_FINITE_LATENCY = "non_finite_latency"
MISSING_TRACE_ID = "missing_trace_id"
MISSING_SERVICE = "missing_service"
#: Every drop reason, in the order the table builder checks them.
DROP_REASONS = (
    MISSING_LATENCY,
    NON_FINITE_LATENCY,
    NEGATIVE_LATENCY,
    MISSING_TRACE_ID,
    MISSING_SERVICE,
    DUPLICATE_SPAN,
)
#: Reason a record is kept but flagged: its parent span is not in the data.
PARENT_MISSING = "parent_missing"
#: Reason a record is kept but flagged: its format named no service, so it carries the
#: format's own placeholder (OTLP ``unknown_service``, Zipkin ``unknown``, Jaeger
#: ``empty-service-name`` / ``null-process-and-service-name``).
UNNAMED_SERVICE = "unnamed_service"
#: Reason a record is kept but flagged: its start time lies outside what
#: ``datetime64[ns]`` holds (years 1677-2262), so ``start_time`` is missing.
START_TIME_OUT_OF_RANGE = "start_time_out_of_range"


@dataclass
class ReadReport:
    """Counts of the records a reader saw, kept and dropped, by reason.

    The invariant ``records == kept + sum(dropped.values())`` always holds. ``flagged``
    counts rows that were kept but are incomplete (for example ``parent_missing``: the
    caller is unknown because the parent span is not in the data).

    Attributes
    ----------
    format : str
        The reader that produced the table.
    sources : list of str
        Files (or ``"<DataFrame>"``) read, in order.
    records : int
        Raw span records seen.
    kept : int
        Rows in the returned table.
    dropped : collections.Counter
        Reason -> number of records dropped.
    flagged : collections.Counter
        Reason -> number of kept rows that are incomplete.

    Examples
    --------
    >>> r = ReadReport(format="csv", sources=["t.csv"], records=5, kept=4)
    >>> r.dropped["negative_latency"] += 1
    >>> r.check()
    >>> print(r)  # doctest: +NORMALIZE_WHITESPACE
    ReadReport (csv, 1 source)
      records seen              5
      kept                      4
      dropped: negative_latency 1
    """

    format: str
    sources: list[str] = field(default_factory=list)
    records: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    flagged: Counter[str] = field(default_factory=Counter)

    def check(self) -> None:
        """Raise ``AssertionError`` if the counts do not add up (a reader bug)."""
        lost = sum(self.dropped.values())
        if self.records != self.kept + lost:
            raise AssertionError(
                f"ReadReport does not add up: {self.records} records != "
                f"{self.kept} kept + {lost} dropped"
            )

    def dominant_drop(self) -> tuple[str, int] | None:
        """The most common drop reason and its count (None when nothing was dropped).

        Examples
        --------
        >>> r = ReadReport(format="csv", records=3, kept=0)
        >>> r.dropped.update({"missing_service": 2, "missing_latency": 1})
        >>> r.dominant_drop()
        ('missing_service', 2)
        """
        if not any(self.dropped.values()):
            return None
        # Ties go to the reason checked first when a table is built.
        order = {reason: i for i, reason in enumerate(DROP_REASONS)}
        return min(self.dropped.items(), key=lambda kv: (-kv[1], order.get(kv[0], len(order))))

    def merge(self, other: ReadReport) -> ReadReport:
        """Return the report of reading both inputs (used for multi-file reads)."""
        fmt = self.format if self.format == other.format else f"{self.format}+{other.format}"
        return ReadReport(
            format=fmt,
            sources=[*self.sources, *other.sources],
            records=self.records + other.records,
            kept=self.kept + other.kept,
            dropped=self.dropped + other.dropped,
            flagged=self.flagged + other.flagged,
        )

    def rows(self) -> list[tuple[str, int]]:
        """Return the report as ``(label, count)`` rows, as printed."""
        rows = [("records seen", self.records), ("kept", self.kept)]
        rows += [(f"dropped: {k}", v) for k, v in sorted(self.dropped.items()) if v]
        rows += [(f"kept, flagged: {k}", v) for k, v in sorted(self.flagged.items()) if v]
        return rows

    def __str__(self) -> str:
        rows = self.rows()
        width = max(len(label) for label, _ in rows)
        n = len(self.sources)
        head = f"ReadReport ({self.format}, {n} source{'s' if n != 1 else ''})"
        return "\n".join([head, *(f"  {label:<{width}} {value}" for label, value in rows)])

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><td>{label}</td><td>{value}</td></tr>" for label, value in self.rows())
        return f"<b>ReadReport</b> ({self.format})<table>{body}</table>"
