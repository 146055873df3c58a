"""Placeholder: the parquet reader is being written."""

from bayesperf.io.registry import TraceFormat, register


def read(path, **options):  # noqa: D103
    raise NotImplementedError("parquet")


FORMAT = register(TraceFormat(name="parquet", read=read, sniff=lambda p, h: False, description="parquet"))
