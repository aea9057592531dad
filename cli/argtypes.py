"""argparse types that refuse bad values with argparse's own one-line error (exit 2)."""

from __future__ import annotations

import argparse
from datetime import timedelta


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def duration(text: str) -> timedelta:
    """``7d``, ``12h``, ``30m``... (training.promotion.parse_duration)."""
    from training.promotion import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
