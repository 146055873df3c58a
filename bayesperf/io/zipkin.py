"""Placeholder: the zipkin reader is being written."""

from bayesperf.io.registry import TraceFormat, register


def read(path, **options):  # noqa: D103
    raise NotImplementedError("zipkin")


FORMAT = register(TraceFormat(name="zipkin", read=read, sniff=lambda p, h: False, description="zipkin"))
