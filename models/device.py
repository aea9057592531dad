"""Pick the torch device: ``auto`` -> CUDA, then Apple MPS, then CPU.

An explicit device is validated here, so a worker configured for ``cuda`` on a machine
without one fails at start-up with a ConfigError instead of on its first batch.

Importing torch costs 1.5-2.5 s. A CPU-only build of torch (its version carries the local
tag ``+cpu``, as the wheels this project installs do) can never see a GPU, so off macOS the
answer is known from the installed package's metadata: a retrain whose texts are all
cached, which needs no torch at all, does not pay the import to learn that.
"""

from __future__ import annotations

import sys
from functools import cache
from importlib import metadata

from core.errors import ConfigError
from core.machine import available_cpus

__all__ = ["available_cpus", "resolve_device", "torch_is_cpu_only"]


@cache
def torch_is_cpu_only() -> bool:
    """True when the installed torch is a CPU-only build on a platform without MPS, read
    from the package metadata (no import). False where torch would have to be asked."""
    if sys.platform == "darwin":  # MPS is in the plain build there
        return False
    try:
        version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        return False  # let the import below say what is missing
    return (version or "").partition("+")[2] == "cpu"


def resolve_device(requested: str) -> str:
    """``"auto"`` | ``"cpu"`` | ``"cuda"`` | ``"cuda:N"`` | ``"mps"`` -> a usable torch device."""
    requested = requested.strip().lower()
    if requested == "cpu" or (requested == "auto" and torch_is_cpu_only()):
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
