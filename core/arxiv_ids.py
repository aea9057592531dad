"""Canonical arXiv identifiers.

A paper is keyed by its id with the version stripped: ``2411.17700`` or, for papers from
before April 2007, ``hep-th/9901001``. Inputs arrive as ``arXiv:2411.17700v2``,
``oai:arXiv.org:hep-th/9901001``, ``https://arxiv.org/abs/2411.17700v1`` and so on.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from core.errors import MessageError

_NEW = r"\d{4}\.\d{4,5}"
_OLD = r"[a-z][a-z\-]*(?:\.[A-Z]{2})?/\d{7}"
_ID_RE = re.compile(rf"(?P<id>{_NEW}|{_OLD})(?:v(?P<version>\d+))?$")
_CANONICAL_RE = re.compile(rf"{_NEW}|{_OLD}")
_PREFIXES = ("oai:arxiv.org:", "arxiv:", "https://arxiv.org/abs/", "http://arxiv.org/abs/")


class ArxivId(NamedTuple):
    id: str
    version: int | None


def parse_arxiv_id(raw: str) -> ArxivId:
    """Split ``raw`` into the canonical id and its version (None when not given).

    >>> parse_arxiv_id("oai:arXiv.org:hep-th/9901001")
    ArxivId(id='hep-th/9901001', version=None)
    >>> parse_arxiv_id("arXiv:2411.17700v2")
    ArxivId(id='2411.17700', version=2)
    """
    text = raw.strip()
    lowered = text.lower()
    for prefix in _PREFIXES:
        if lowered.startswith(prefix.lower()):
            text = text[len(prefix) :]
            break
    match = _ID_RE.fullmatch(text)
    if match is None:
        raise MessageError(f"not an arXiv identifier: {raw!r}")
    version = match.group("version")
    return ArxivId(match.group("id"), int(version) if version else None)


def canonical_id(raw: str) -> str:
    """The version-less id used as the key everywhere."""
    if _CANONICAL_RE.fullmatch(raw):  # already canonical (snapshot records, messages): as is
        return raw
    return parse_arxiv_id(raw).id
