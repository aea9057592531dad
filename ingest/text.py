"""Text normalisation shared by every parser, so the model sees the same text whatever the source.

arXiv wraps titles and abstracts at ~80 columns in OAI-PMH and the Kaggle snapshot
(``"...nuclear equation of\\n  state: ..."``), indents abstracts by two spaces, and a
re-indented OAI page even adds runs of spaces; RSS and the DB-derived records are single-line.
Collapsing every run of whitespace into one space makes all of them identical.
"""

from __future__ import annotations

import re

_WHITESPACE = re.compile(r"\s+")


def clean_text(text: str | None) -> str | None:
    """Collapse runs of whitespace (line breaks included) into single spaces and strip.

    Returns None for None and for text that is only whitespace, so "absent" has one spelling.

    >>> clean_text("the nuclear equation of\\n  state")
    'the nuclear equation of state'
    >>> clean_text("  \\n ") is None
    True
    """
    if text is None:
        return None
    cleaned = _WHITESPACE.sub(" ", text).strip()
    return cleaned or None
