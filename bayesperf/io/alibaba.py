"""Placeholder: the alibaba reader is being written."""

from bayesperf.io.registry import TraceFormat, register


def read(path, **options):  # noqa: D103
    raise NotImplementedError("alibaba")


FORMAT = register(TraceFormat(name="alibaba", read=read, sniff=lambda p, h: False, description="alibaba"))
