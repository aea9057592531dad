"""The fixed evaluation holdout: papers chosen by a hash of their id, never trained on.

    in_holdout("2411.17700")      # True for about 1 paper in HOLDOUT_SHARE

``train --exclude-holdout`` drops these papers from training; ``evaluate --holdout`` scores
only them. Applied to ../shared/data/arxiv-corpus/arxiv-corpus-part03.jsonl.gz it selects
the ~5,000-paper evaluation set of docs/quality.md. The rule depends on the id alone (not
on file order or on which files are read), so every model, whatever it was trained on, is
compared on the same papers.
"""

from __future__ import annotations

import hashlib

HOLDOUT_SALT = "arxiv-stream-holdout/1"
HOLDOUT_SHARE = 20
"""One paper in this many is in the holdout (5%)."""


def in_holdout(arxiv_id: str) -> bool:
    digest = hashlib.sha256(f"{HOLDOUT_SALT}:{arxiv_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % HOLDOUT_SHARE == 0
