"""Memory measurement shared by the benchmarks (each case runs in its own subprocess)."""

from __future__ import annotations

import os
import resource


def peak_rss_bytes() -> int:
    """This process's peak RSS in bytes.

    ``VmHWM`` belongs to the process's own address space. ``ru_maxrss`` (the fallback
    off Linux) is not usable on Linux: a child starts with the RSS high-water mark of the
    parent it was forked from (kept across exec), so it would report the driver's memory.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def rss_bytes() -> int:
    """This process's current RSS in bytes."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
