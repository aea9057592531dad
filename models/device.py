"""Pick the torch device: ``auto`` -> CUDA, then Apple MPS, then CPU.

An explicit device is validated here, so a worker configured for ``cuda`` on a machine
without one fails at start-up with a ConfigError instead of on its first batch.
"""

from __future__ import annotations

from core.errors import ConfigError
from core.machine import available_cpus

__all__ = ["available_cpus", "resolve_device"]


def resolve_device(requested: str) -> str:
    """``"auto"`` | ``"cpu"`` | ``"cuda"`` | ``"cuda:N"`` | ``"mps"`` -> a usable torch device."""
    requested = requested.strip().lower()
    if requested == "cpu":
        return "cpu"
    import torch  # here, not at import: a process that never loads a model never pays it

    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
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
