"""Placeholder: the otlp reader is being written."""

from bayesperf.io.registry import TraceFormat, register


def read(path, **options):  # noqa: D103
    raise NotImplementedError("otlp")


FORMAT = register(TraceFormat(name="otlp", read=read, sniff=lambda p, h: False, description="otlp"))
