"""Should a challenger replace the promoted model? A pure decision over two metric dicts.

Both models are scored on the same held-out papers (the challenger's test split). The
challenger is promoted unless one of the guarded metrics drops by more than ``margin``
(absolute). With no incumbent it is promoted. The decision, with both sets of numbers,
is stored on the challenger's ``models`` row and printed.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

GUARDED: tuple[tuple[str, str], ...] = (
    ("domain", "accuracy"),
    ("category", "accuracy"),
    ("category", "precision_at_1"),
    ("category", "top5_micro_recall"),
)


def decide(
    challenger: dict[str, Any], incumbent: dict[str, Any] | None, *, margin: float
) -> dict[str, Any]:
    """``{"promote": bool, "reason": str, "margin": m, "compared": {...}}``."""
    if incumbent is None:
        return {"promote": True, "reason": "no promoted model", "margin": margin, "compared": {}}
    compared: dict[str, dict[str, float]] = {}
    regressions: list[str] = []
    for space, metric in GUARDED:
        new = float(challenger[space][metric])
        old = float(incumbent[space][metric])
        name = f"{space}.{metric}"
        compared[name] = {"challenger": new, "incumbent": old, "delta": round(new - old, 6)}
        if new < old - margin:
            regressions.append(f"{name} {old:.4f} -> {new:.4f}")
    if regressions:
        reason = "regressed beyond margin: " + "; ".join(regressions)
    else:
        reason = f"no guarded metric dropped by more than {margin}"
    return {
        "promote": not regressions,
        "reason": reason,
        "margin": margin,
        "compared": compared,
    }


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``7d``, ``12h``, ``30m``, ``45s``, ``2w``."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (examples: 7d, 12h, 30m)")
    value, unit = float(match.group(1)), _UNITS[match.group(2)]
    delta = timedelta(**{unit: value})
    if delta.total_seconds() <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    return delta
