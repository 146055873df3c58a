"""Placeholder: the jaeger reader is being written."""

from bayesperf.io.registry import TraceFormat, register


def read(path, **options):  # noqa: D103
    raise NotImplementedError("jaeger")


FORMAT = register(TraceFormat(name="jaeger", read=read, sniff=lambda p, h: False, description="jaeger"))
