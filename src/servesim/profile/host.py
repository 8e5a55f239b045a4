"""Facts about the host machine that the CPU backends report: its processor and memory.

These read the operating system, so only backends call them, never the
performance model.
"""

from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    """The processor's marketing name with the core count, e.g. ``cpu: AMD EPYC 9654 (16 cores)``."""
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"cpu: {name or platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def available_host_bytes() -> float:
    """Host memory available now (bytes), or ``inf`` where the OS does not say.

    Linux's ``MemAvailable`` counts reclaimable page cache, which the free
    page count leaves out; other systems fall back to the free page count.
    """
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024  # the file says kB, meaning KiB
    except OSError:
        pass
    return _sysconf_bytes("SC_AVPHYS_PAGES")


def total_host_bytes() -> float:
    """Host physical memory (bytes), or ``inf`` where the OS does not say."""
    return _sysconf_bytes("SC_PHYS_PAGES")


def _sysconf_bytes(pages_name: str) -> float:
    try:
        return float(os.sysconf(pages_name) * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return float("inf")
