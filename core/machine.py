"""What this process may use of the machine, without importing torch."""

from __future__ import annotations

import os


def available_cpus() -> int:
    """CPU cores this process may run on (cgroup/affinity aware where the OS says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)
