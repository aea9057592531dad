"""Text normalisation shared by every parser, so the model sees the same text whatever the source.

arXiv wraps titles and abstracts at ~80 columns in OAI-PMH and the Kaggle snapshot
(``"...nuclear equation of\\n  state: ..."``), indents abstracts by two spaces, and a
re-indented OAI page even adds runs of spaces; RSS and the DB-derived records are single-line.
Collapsing every run of whitespace into one space makes all of them identical.
"""

from __future__ import annotations


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
    if text.isascii():
        # The result is ``" ".join(text.split())`` (below) computed without splitting: in
        # ASCII, str.split's whitespace is the space, \n, and the eight characters tested
        # here. Most titles, authors and dois are single-spaced already, and the snapshot's
        # abstracts only break lines ("...is\npresented..."): a newline made a space, the
        # ends trimmed, and a few ``in`` scans (memchr) prove nothing else is left to do.
        flat = text.replace("\n", " ").strip(" ")
        if (
            "  " not in flat
            and "\t" not in flat
            and "\r" not in flat
            and "\x0b" not in flat
            and "\x0c" not in flat
            and "\x1c" not in flat
            and "\x1d" not in flat
            and "\x1e" not in flat
            and "\x1f" not in flat
        ):
            return flat or None
    # str.split() splits on the same Unicode whitespace as re's \s, at a fraction of the cost
    # (the snapshot reader calls this five times per record).
    cleaned = " ".join(text.split())
    return cleaned or None


class RejectedItem(Exception):
    """One feed item that is not a valid Paper (over the size limits of core.schemas, say):
    the parsers log it, naming the paper, and go on with the rest of the feed."""


def first_error(exc: Exception) -> str:
    """The first line of a pydantic ValidationError (field and reason), else str(exc)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        found = errors()
        if found:
            where = ".".join(str(part) for part in found[0].get("loc", ()))
            return f"{where}: {found[0].get('msg', '')}"
    return str(exc).splitlines()[0]
