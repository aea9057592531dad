"""Pick the torch device: ``auto`` -> CUDA, then Apple MPS, then CPU.

An explicit device is validated here, so a worker configured for ``cuda`` on a machine
without one fails at start-up with a ConfigError instead of on its first batch.
"""

from __future__ import annotations

import os

import torch

from core.errors import ConfigError


def resolve_device(requested: str) -> str:
    """``"auto"`` | ``"cpu"`` | ``"cuda"`` | ``"cuda:N"`` | ``"mps"`` -> a usable torch device."""
    requested = requested.strip().lower()
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if requested == "cpu":
        return "cpu"
    if requested == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("device 'mps' requested but Apple MPS is not available here")
        return "mps"
    if requested == "cuda" or requested.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {requested!r} requested but CUDA is not available "
                "(CPU build of torch or no GPU); use 'auto' or 'cpu'"
            )
        index = requested.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ConfigError(
                f"device {requested!r}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
        return requested
    raise ConfigError(f"unknown device {requested!r}; expected auto, cpu, cuda[:N] or mps")


def available_cpus() -> int:
    """CPU cores this process may run on (cgroup/affinity aware where the OS says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)
