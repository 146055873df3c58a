"""Exceptions raised by bayesperf."""

from __future__ import annotations

import os


class TraceFormatError(ValueError):
    """Input traces that cannot be read as asked.

    The message names the source (file), where in it the problem is (row, field or JSON
    path) and what was expected, so that a user can fix the file or the call.

    Parameters
    ----------
    problem : str
        What is wrong.
    source : str or path, optional
        The file (or ``"<DataFrame>"``) being read.
    where : str, optional
        Row, column or JSON path of the problem.
    expected : str, optional
        What the reader expected there.

    Examples
    --------
    >>> err = TraceFormatError("column missing", source="t.csv", where="header",
    ...                        expected="a 'latency' column")
    >>> str(err)
    "t.csv: header: column missing (expected a 'latency' column)"
    """

    def __init__(
        self,
        problem: str,
        *,
        source: str | os.PathLike[str] | None = None,
        where: str | None = None,
        expected: str | None = None,
    ) -> None:
        self.problem = problem
        self.source = None if source is None else str(source)
        self.where = where
        self.expected = expected
        parts = [p for p in (self.source, where) if p]
        message = ": ".join([*parts, problem])
        if expected:
            message += f" (expected {expected})"
        super().__init__(message)


class TraceReadWarning(UserWarning):
    """A read kept fewer than half of the span records it saw.

    The message names the source and the most common reason for the drops; the
    :class:`~bayesperf.io.ReadReport` in ``attrs["read_report"]`` has every count.
    """


class NotFittedError(RuntimeError):
    """A model's results were asked for before :meth:`fit` was called."""
