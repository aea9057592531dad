"""Parse rss.arxiv.org feeds: bytes in, Papers out, no I/O (fetching lives in ingest.http).

One item of the current format (the recorded all-archives feed of 28 Nov 2024)::

    <item>
      <title>Exploring the Impact of Generative AI on ...</title>
      <description>arXiv:2411.17700v1 Announce Type: new
    Abstract: This study investigates ...</description>
      <guid isPermaLink="false">oai:arXiv.org:2411.17700v1</guid>
      <category>cs.CY</category>                            one per category
      <pubDate>Thu, 28 Nov 2024 00:00:00 -0500</pubDate>    the announcement day
      <arxiv:announce_type>new</arxiv:announce_type>        new|cross|replace|replace-cross
      <arxiv:DOI>...</arxiv:DOI>  <arxiv:journal_reference>...</arxiv:journal_reference>
      <dc:creator>Jun Cui, B. Two</dc:creator>              one element, names joined by ", "
    </item>

Choices worth knowing:

* Categories keep feed order. arXiv does not promise that the first ``<category>`` is the
  primary one, and for cross-lists it need not be; OAI-PMH and the snapshot do put the
  primary first. So ``Paper.primary_category`` of an RSS paper is "first in the feed".
* ``submitted`` is None: RSS does not carry the submission date. ``updated`` is the item's
  ``pubDate`` (else the channel's), i.e. the day this version was announced, in UTC.
* feedparser runs with its HTML sanitizer off. The description is plain text holding LaTeX,
  and the sanitizer would treat ``$\\frac{1}{3}<s<1$`` as a tag (giving ``<s><1``) and
  re-escape ``E&E`` to ``E&amp;E`` (12 of the 1,504 recorded abstracts). We never render it.
* An error feed (channel title "Feed error for query: ...", e.g. a bad archive name) raises
  FeedError with arXiv's message; a feed with no items (the ``test`` archive) returns [].
"""

from __future__ import annotations

import logging
import re
import xml.sax
from datetime import UTC, datetime
from time import struct_time
from typing import Any

import feedparser
from pydantic import ValidationError

from core.arxiv_ids import parse_arxiv_id
from core.errors import ConfigError, FeedError, FeedParseError, MessageError
from core.schemas import Paper
from ingest.text import RejectedItem, clean_text, first_error

log = logging.getLogger(__name__)

_ERROR_TITLE = "Feed error for query"
# "arXiv:2411.17700v1 Announce Type: new \nAbstract: ..." (old-style ids look alike).
_DESCRIPTION = re.compile(
    r"^\s*(?P<id>arXiv:\S+)\s+Announce Type:\s*(?P<type>\S+)\s*Abstract:\s?(?P<abstract>.*)$",
    re.DOTALL,
)


def rss_url(base_url: str, categories: list[str]) -> str:
    """The feed URL for several archives/categories: ``<base>/cs+math.AG+hep-th``."""
    names = [c.strip() for c in categories if c.strip()]
    if not names:
        raise ConfigError("no RSS categories to follow")
    return f"{base_url.rstrip('/')}/{'+'.join(names)}"


def parse_rss(data: bytes) -> list[Paper]:
    """Every item of an rss.arxiv.org feed as a Paper (source="rss"), in feed order.

    Raises FeedParseError for bytes that are not a well-formed RSS feed (HTML error pages,
    Atom, truncated downloads) and FeedError for arXiv's error feed.
    """
    feed = feedparser.parse(data, sanitize_html=False, resolve_relative_uris=False)
    bozo = feed.get("bozo_exception")
    if isinstance(bozo, xml.sax.SAXException):
        raise FeedParseError(f"malformed RSS: {bozo}")
    if not str(feed.get("version", "")).startswith("rss"):
        raise FeedParseError(f"not an RSS feed (detected {feed.get('version') or 'nothing'!r})")
    channel = feed.feed
    title = channel.get("title", "")
    if title.startswith(_ERROR_TITLE):
        raise FeedError(f"arXiv RSS error: {channel.get('description') or title}")
    announced = _utc(channel.get("published_parsed"))
    papers = []
    for entry in feed.entries:
        try:
            papers.append(_paper(entry, announced))
        except RejectedItem as exc:  # one paper over the limits must not stop the feed
            log.error("%s", exc)
    return papers


def _paper(entry: Any, announced: datetime | None) -> Paper:
    description = entry.get("summary", "")
    match = _DESCRIPTION.match(description)
    raw_id = match.group("id") if match else entry.get("id", "")
    announce_type = entry.get("arxiv_announce_type") or (match.group("type") if match else None)
    try:
        arxiv_id = parse_arxiv_id(raw_id)
        title = clean_text(entry.get("title"))
        if title is None:
            raise MessageError("item has no title")
        return Paper(
            arxiv_id=arxiv_id.id,
            version=arxiv_id.version or 1,
            title=title,
            abstract=clean_text(match.group("abstract") if match else description),
            authors=clean_text(", ".join(a.get("name", "") for a in entry.get("authors", []))),
            categories=[tag["term"] for tag in entry.get("tags", []) if tag.get("term")],
            updated=_utc(entry.get("published_parsed")) or announced,
            doi=clean_text(entry.get("arxiv_doi")),
            journal_ref=clean_text(entry.get("arxiv_journal_reference")),
            source="rss",
            announce_type=announce_type,
        )
    except ValidationError as exc:
        raise RejectedItem(f"skipped RSS item {raw_id!r}: {first_error(exc)}") from exc
    except MessageError as exc:
        raise FeedParseError(f"unusable RSS item {raw_id or entry.get('link')!r}: {exc}") from exc


def _utc(parsed: struct_time | None) -> datetime | None:
    """feedparser's ``*_parsed`` values are struct_time already converted to UTC."""
    return datetime(*parsed[:6], tzinfo=UTC) if parsed else None
