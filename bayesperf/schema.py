"""The canonical span table: column names, units and dtypes, fixed in one place.

Every reader in :mod:`bayesperf.io` returns a :class:`pandas.DataFrame` with exactly the
columns of :data:`SPAN_COLUMNS`, in that order. Latency is always milliseconds
(``float64``); ``start_time`` is ``datetime64[ns, UTC]``. Service-like columns are
categorical, which keeps 10^7-span tables small and makes grouping fast.

Examples
--------
>>> from bayesperf.schema import SPAN_COLUMNS, LATENCY
>>> LATENCY
'latency'
>>> SPAN_COLUMNS[:3]
('trace_id', 'span_id', 'parent_id')
"""

from __future__ import annotations

from typing import Final

TRACE_ID: Final = "trace_id"
SPAN_ID: Final = "span_id"
PARENT_ID: Final = "parent_id"
SERVICE: Final = "service"
OPERATION: Final = "operation"
CALLER: Final = "caller"
CALLEE: Final = "callee"
START_TIME: Final = "start_time"
LATENCY: Final = "latency"
ERROR: Final = "error"

#: Columns of the canonical span table, in order.
SPAN_COLUMNS: Final = (
    TRACE_ID,
    SPAN_ID,
    PARENT_ID,
    SERVICE,
    OPERATION,
    CALLER,
    CALLEE,
    START_TIME,
    LATENCY,
    ERROR,
)

#: pandas dtypes of the canonical columns.
SPAN_DTYPES: Final = {
    TRACE_ID: "str",
    SPAN_ID: "str",
    PARENT_ID: "str",
    SERVICE: "category",
    OPERATION: "category",
    CALLER: "category",
    CALLEE: "category",
    START_TIME: "datetime64[ns, UTC]",
    LATENCY: "float64",
    ERROR: "boolean",
}

#: Names a flat span table (the seed's ``parsed_traces.csv``) may give its start-time
#: column, matched ignoring case; the first one present wins. Numbers in a column named
#: other than ``start_time`` are Unix time in s, ms, µs or ns, told apart by magnitude.
START_TIME_ALIASES: Final = (
    START_TIME,
    "startTime",
    "start_timestamp",
    "start_ts",
    "startTimeUnixNano",
    "start_time_unix_nano",
    "timestamp",
    "ts",
    "start",
    "begin",
    "time",
)

#: Columns with service names: grouping keys and Markov-chain states.
SERVICE_COLUMNS: Final = (SERVICE, CALLER, CALLEE)

#: Pseudo-states that open and close every request in transition counts.
START: Final = "START"
END: Final = "END"
