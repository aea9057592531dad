"""Parse arXiv OAI-PMH responses: bytes in, an OAIPage out, no I/O (fetching: ingest.harvest).

Two metadata formats are understood (``metadataPrefix``), both with the primary category
first in ``<categories>``:

    arXivRaw  http://arxiv.org/OAI/arXivRaw/   every version with its RFC 2822 date:
              version = highest vN, submitted = v1 date, updated = latest version's date.
    arXiv     http://arxiv.org/OAI/arXiv/      no versions; <created>/<updated> days:
              version = 1 (the format does not say), submitted = created,
              updated = <updated>, or created when there is none (one version only).

A page holds ``<record>``s (ListRecords, GetRecord) or bare ``<header>``s (ListIdentifiers);
headers with ``status="deleted"`` go to ``deleted_ids``. Identify, ListSets and
ListMetadataFormats parse to an empty page. ``<error code=...>`` raises OAIError; bytes that
are not an OAI-PMH document (arXiv's 503 "Retry after" HTML page) raise FeedParseError, and
so does a record we cannot turn into a Paper: arXiv's records are uniform, so that means the
format changed and a harvest should stop loudly rather than drop papers quietly.

XML is read with the standard library (expat refuses entity-expansion bombs since 2.4.1).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime

from pydantic import ValidationError

from core.arxiv_ids import canonical_id
from core.errors import FeedParseError, MessageError, OAIError
from core.schemas import Paper
from ingest.text import RejectedItem, clean_text, first_error

log = logging.getLogger(__name__)

OAI = "{http://www.openarchives.org/OAI/2.0/}"
ARXIV = "{http://arxiv.org/OAI/arXiv/}"
ARXIV_RAW = "{http://arxiv.org/OAI/arXivRaw/}"


@dataclass(frozen=True)
class OAIPage:
    """One OAI-PMH response. ``resumption_token`` is None on the last (or only) page."""

    response_date: datetime
    """When arXiv answered (UTC). A harvest's first page gives the next ``from`` date."""
    papers: list[Paper] = field(default_factory=list)
    deleted_ids: list[str] = field(default_factory=list)
    resumption_token: str | None = None
    complete_list_size: int | None = None
    cursor: int | None = None


def oai_params(
    verb: str = "ListRecords",
    metadata_prefix: str | None = None,
    set_spec: str | None = None,
    from_date: date | None = None,
    until: date | None = None,
    resumption_token: str | None = None,
) -> dict[str, str]:
    """Query parameters of one request.

    A request that carries a resumptionToken must carry nothing else but the verb (the
    token encodes the rest; arXiv answers badArgument otherwise).
    """
    if resumption_token is not None:
        return {"verb": verb, "resumptionToken": resumption_token}
    params = {"verb": verb}
    optional = {
        "metadataPrefix": metadata_prefix,
        "set": set_spec,
        "from": from_date.isoformat()[:10] if from_date else None,
        "until": until.isoformat()[:10] if until else None,
    }
    params.update({key: value for key, value in optional.items() if value is not None})
    return params


_RECORD_VERBS = frozenset({f"{OAI}ListRecords", f"{OAI}GetRecord"})


def parse_oai(data: bytes) -> OAIPage:
    """Read one OAI-PMH response (see the module docstring for what maps to what)."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise FeedParseError(f"not XML: {exc}; starts with {data[:80]!r}") from exc
    if root.tag != f"{OAI}OAI-PMH":
        raise FeedParseError(f"not an OAI-PMH response: root element {root.tag!r}")
    error = root.find(f"{OAI}error")
    if error is not None:
        raise OAIError(error.get("code", "unknown"), (error.text or "").strip())
    verbs = [child.tag.removeprefix(OAI) for child in root if child.tag in _RECORD_VERBS]
    if not verbs:
        found = [child.tag.removeprefix(OAI) for child in root][-1:]
        raise FeedParseError(
            f"OAI-PMH response holds no records (a {found[0] if found else 'bare'} answer; "
            "ListRecords or GetRecord expected)"
        )

    papers = []
    for record in root.iter(f"{OAI}record"):
        if _deleted(record):
            continue
        try:
            papers.append(_paper(record))
        except RejectedItem as exc:  # one paper over the limits must not stop the harvest
            log.error("%s", exc)
    deleted = [_deleted_id(h) for h in root.iter(f"{OAI}header") if h.get("status") == "deleted"]
    token = root.find(f".//{OAI}resumptionToken")
    return OAIPage(
        response_date=_iso_utc(root.findtext(f"{OAI}responseDate", "")),
        papers=papers,
        deleted_ids=deleted,
        resumption_token=clean_text(token.text) if token is not None else None,
        complete_list_size=_int(token, "completeListSize"),
        cursor=_int(token, "cursor"),
    )


def _deleted(record: ET.Element) -> bool:
    header = record.find(f"{OAI}header")
    return header is not None and header.get("status") == "deleted"


def _deleted_id(header: ET.Element) -> str:
    identifier = header.findtext(f"{OAI}identifier", "")
    try:
        return canonical_id(identifier)
    except MessageError as exc:
        raise FeedParseError(f"deleted record with a bad identifier: {exc}") from exc


def _paper(record: ET.Element) -> Paper:
    identifier = record.findtext(f"{OAI}header/{OAI}identifier", "?")
    raw = record.find(f"{OAI}metadata/{ARXIV_RAW}arXivRaw")
    plain = record.find(f"{OAI}metadata/{ARXIV}arXiv")
    try:
        if raw is not None:
            return _from_arxiv_raw(raw)
        if plain is not None:
            return _from_arxiv(plain)
        raise MessageError("metadata is neither arXivRaw nor arXiv")
    except ValidationError as exc:
        raise RejectedItem(f"skipped OAI record {identifier}: {first_error(exc)}") from exc
    except (MessageError, ValueError, TypeError) as exc:
        raise FeedParseError(f"unusable OAI record {identifier}: {exc}") from exc


def _from_arxiv_raw(meta: ET.Element) -> Paper:
    versions: dict[int, datetime] = {}
    for version in meta.findall(f"{ARXIV_RAW}version"):
        number = int(version.get("version", "").lstrip("v"))
        versions[number] = _rfc2822_utc(version.findtext(f"{ARXIV_RAW}date", ""))
    latest = max(versions, default=1)
    return _build(
        meta,
        ARXIV_RAW,
        version=latest,
        authors=meta.findtext(f"{ARXIV_RAW}authors"),
        submitted=versions.get(1),
        updated=versions.get(latest),
    )


def _from_arxiv(meta: ET.Element) -> Paper:
    created = _day_utc(meta.findtext(f"{ARXIV}created"))
    names = []
    for author in meta.iterfind(f"{ARXIV}authors/{ARXIV}author"):
        parts = (author.findtext(f"{ARXIV}{part}") for part in ("forenames", "keyname", "suffix"))
        names.append(" ".join(p.strip() for p in parts if p and p.strip()))
    return _build(
        meta,
        ARXIV,
        version=1,
        authors=", ".join(n for n in names if n),
        submitted=created,
        updated=_day_utc(meta.findtext(f"{ARXIV}updated")) or created,
    )


def _build(
    meta: ET.Element,
    ns: str,
    *,
    version: int,
    authors: str | None,
    submitted: datetime | None,
    updated: datetime | None,
) -> Paper:
    """The fields both formats spell the same way."""
    title = clean_text(meta.findtext(f"{ns}title"))
    if title is None:
        raise MessageError("record has no title")
    return Paper(
        arxiv_id=meta.findtext(f"{ns}id", ""),
        version=version,
        title=title,
        abstract=clean_text(meta.findtext(f"{ns}abstract")),
        authors=clean_text(authors),
        categories=(meta.findtext(f"{ns}categories") or "").split(),
        submitted=submitted,
        updated=updated,
        doi=clean_text(meta.findtext(f"{ns}doi")),
        journal_ref=clean_text(meta.findtext(f"{ns}journal-ref")),
        source="oai",
    )


def _iso_utc(text: str) -> datetime:
    """``2015-01-06T20:49:59Z`` -> aware UTC datetime."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise FeedParseError(f"bad OAI-PMH responseDate {text!r}") from exc
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _rfc2822_utc(text: str) -> datetime:
    """``Tue, 3 Apr 2007 22:04:11 GMT`` -> aware UTC datetime."""
    value = parsedate_to_datetime(text.strip())
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _day_utc(text: str | None) -> datetime | None:
    """``2014-12-29`` -> midnight UTC that day; None when absent."""
    if text is None or not text.strip():
        return None
    return datetime.combine(date.fromisoformat(text.strip()), datetime.min.time(), tzinfo=UTC)


def _int(element: ET.Element | None, attribute: str) -> int | None:
    value = element.get(attribute) if element is not None else None
    return int(value) if value and value.strip().isdigit() else None
