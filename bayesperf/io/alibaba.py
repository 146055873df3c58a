"""``alibaba``: Alibaba's microservice call-graph CSV (``MSCallGraph``, 2021 and 2022 releases).

Each row is already one caller -> callee call (an edge of the call graph):

============== ========================= ============================================
canonical      CSV column                notes
============== ========================= ============================================
``trace_id``   ``traceid``               also accepted: ``trace_id``
``span_id``    ``rpcid``                 dotted call-tree id (``0.1.2``); also ``rpc_id``
``parent_id``  ``rpcid`` minus last part ``0.1.2`` -> ``0.1``; the root ``0`` has none
``caller``     ``um``                    upstream microservice; ``USER`` for root calls
``service``    ``dm``                    downstream microservice; ``callee`` too
``operation``  ``interface``             may be empty (DB / MC calls in 2021)
``start_time`` ``timestamp``             ms since the **dataset's start**, not Unix time
``latency``    ``rt``                    ms; 0 is a legitimate sub-millisecond call
============== ========================= ============================================

Column names are matched case-insensitively. The 2022 release has
``timestamp,traceid,service,rpcid,rpctype,um,uminstanceid,interface,dm,dminstanceid,rt``
(its README spells ``rpc_id``, its files ``rpcid``); the 2021 release has
``timestamp,traceid,rpcid,um,rpctype,interface,dm,rt``, often after an unnamed
leading index column, which is ignored. The 2022 ``service`` column is an online-service
id (a group of call graphs), not a microservice, and is not read.

Things to know about the data:

* ``start_time`` is relative: ``timestamp`` milliseconds after the start of the trace
  collection, stored as that many milliseconds after the Unix epoch (1970-01-01 UTC).
  Differences between spans are right; calendar dates are not.
* A remote call is logged from both sides with the same ``rpcid``; in the 2021 release
  the callee-side record has a **negative** ``rt`` (minus the callee's own response
  time). Negative latencies are dropped and counted (``negative_latency``) when the
  table is built, and any remaining repeat of a ``(traceid, rpcid)`` pair is dropped as
  ``duplicate_span``: the first occurrence in the file wins.
* Placeholder names: ``USER`` as ``um`` is the end user calling the entry service and
  is kept as the caller of root calls. ``UNKNOWN``, ``UNAVAILABLE`` and empty cells
  mean the name was not recorded: they become missing values. A row whose ``dm`` is
  missing, or is ``USER`` (the user is never a callee; these rows have an unknown
  callee instance), has no service and is dropped and counted as ``missing_service``.
  A row whose ``um`` is missing is kept with ``caller`` missing.
* ``caller`` comes from ``um``, not from parent links, so ``parent_missing`` is not
  flagged for this format (most call graphs in a sample lack some of their calls).

Examples
--------
>>> import bayesperf
>>> spans = bayesperf.read_traces("MSCallGraph_0.csv.gz")          # doctest: +SKIP

"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bayesperf import schema as S
from bayesperf.errors import TraceFormatError
from bayesperf.io._csv import header, read_csv, row_locator
from bayesperf.io._table import RawSpans, as_float
from bayesperf.io.registry import TraceFormat, register, suffixes

#: Canonical role -> accepted CSV column names (lower case), first match wins.
ALIASES: dict[str, tuple[str, ...]] = {
    "traceid": ("traceid", "trace_id"),
    "rpcid": ("rpcid", "rpc_id"),
    "um": ("um",),
    "dm": ("dm",),
    "rt": ("rt",),
    "timestamp": ("timestamp",),
    "interface": ("interface",),
}
#: Columns a file must have.
REQUIRED = ("traceid", "rpcid", "um", "dm", "rt")
#: Columns read when present.
OPTIONAL = ("timestamp", "interface")

#: Names that mean "not recorded", in any name column.
MISSING_NAMES = frozenset({"UNKNOWN", "UNAVAILABLE"})
#: The end user: a legitimate caller (of root calls), never a callee.
USER = "USER"

#: Flag for kept calls whose caller is a placeholder (not recorded).
PLACEHOLDER_CALLER = "placeholder_caller"
_NS_PER_MS = 1_000_000


def resolve_columns(names: list[str]) -> dict[str, str]:
    """Map each role in :data:`ALIASES` to the header column that holds it (if any)."""
    lower = {}
    for name in names:
        lower.setdefault(name.strip().lower(), name)
    found = {}
    for role, aliases in ALIASES.items():
        for alias in aliases:
            if alias in lower:
                found[role] = lower[alias]
                break
    return found


def read(path: Path) -> RawSpans:
    """Read one Alibaba call-graph CSV file (``.gz`` is decompressed)."""
    names = header(path)
    if not names:
        raise TraceFormatError("file is empty", source=path, expected="a CSV header line")
    cols = resolve_columns(names)
    missing = [role for role in REQUIRED if role not in cols]
    if missing:
        wanted = [" or ".join(ALIASES[role]) for role in missing]
        raise TraceFormatError(
            f"missing required column(s) {wanted}; the header has {names}",
            source=path,
            where="line 1 (header)",
            expected=f"Alibaba call-graph columns {list(REQUIRED)}",
        )
    name, locate = str(path), row_locator(path)
    text = [cols[r] for r in ("traceid", "rpcid", "um", "dm", "interface") if r in cols]
    table = read_csv(
        path,
        required=[cols[r] for r in REQUIRED],
        optional=[cols[r] for r in OPTIONAL if r in cols],
        text=text,
    )
    rpcid = _names(table[cols["rpcid"]])
    caller = _names(table[cols["um"]])
    frame = {
        S.TRACE_ID: table[cols["traceid"]],
        S.SPAN_ID: rpcid,
        S.PARENT_ID: parent_rpcid(rpcid),
        S.CALLER: caller,
    }
    service = _names(table[cols["dm"]])
    service = service.where(service != USER, None)
    frame[S.SERVICE] = service
    frame[S.CALLEE] = service
    if "interface" in cols:
        frame[S.OPERATION] = table[cols["interface"]]
    if "timestamp" in cols:
        frame[S.START_TIME] = _ms_to_ns(table[cols["timestamp"]], cols["timestamp"], name, locate)
    frame[S.LATENCY] = as_float(table[cols["rt"]], cols["rt"], name, locate)
    # A call whose caller was not recorded (UNAVAILABLE, empty) is kept but incomplete.
    flagged = {PLACEHOLDER_CALLER: caller.isna().to_numpy()}
    return RawSpans(frame=pd.DataFrame(frame), source=name, locate=locate, flagged=flagged)


def parent_rpcid(rpcid: pd.Series) -> pd.Series:
    """Parent of each dotted rpc id: the id without its last part (none for ``"0"``)."""
    text = rpcid.astype("str")
    has_parent = text.str.contains(".", regex=False).fillna(False).astype(bool)
    parent = text.str.replace(r"\.[^.]*$", "", regex=True)
    return parent.where(has_parent, None).astype("str")


def _names(col: pd.Series) -> pd.Series:
    """Strings with empty cells and the "not recorded" placeholders as missing."""
    text = col.astype("str").str.strip()
    return text.where(~text.isin(MISSING_NAMES) & (text != ""), None).astype("str")


def _ms_to_ns(col: pd.Series, column: str, name: str, locate) -> pd.Series:
    if pd.api.types.is_integer_dtype(col):
        return col.astype("Int64") * _NS_PER_MS
    ms = as_float(col, column, name, locate)
    return pd.Series(np.round(ms.to_numpy() * _NS_PER_MS), index=ms.index)


def _sniff(path: Path, head: bytes) -> bool:
    if suffixes(path) != ".csv":
        return False
    found = resolve_columns(header(path))
    return all(role in found for role in REQUIRED)


FORMAT = register(
    TraceFormat(
        name="alibaba",
        read=read,
        sniff=_sniff,
        description="Alibaba microservice call-graph CSV: traceid, rpcid, um, dm, rt (ms)",
    )
)
