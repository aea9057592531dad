"""Stream the Kaggle ``arxiv-metadata-oai-snapshot.json`` (JSON lines, plain or gzip) as Papers.

    report = SnapshotReport()
    for paper in read_snapshot("arxiv-metadata-oai-snapshot.json.gz", archives={"cs"},
                               since=date(2020, 1, 1), report=report):
        ...
    print(report)   # read, yielded, skipped and why

The file is read one line at a time, never whole. What memory grows with is the number of
records, not their bytes: the set of ids seen (for de-duplication; ~300 MB measured for
2.7 M ids, the size of the full snapshot) and the list of malformed lines.

What real records look like (see ../shared/data/README.md) and what we do about it:

* Any field but ``id``/``title``/``categories`` may be null. Lines without those three, or
  that are not JSON objects, are recorded in ``report.malformed`` and skipped, never raised:
  one bad line must not stop a multi-hour training read. A file in which *no* line is a
  record (HTML, garbage) raises FeedParseError once it has been read.
* ``versions[].created`` comes as RFC 2822 (``Mon, 2 Apr 2007 19:18:42 GMT``) or as the
  arXiv DB string (``2007-04-02 19:18:42``, zone not stated: taken as UTC).
* ``versions`` may be null (version 1, no dates: ``update_date`` stands in), and in arXiv's
  test-DB records it can lack early versions or be in string order (v1, v10, v11, v2, ...).
  So version = the highest vN listed (the number of versions in a complete Kaggle record),
  submitted = v1's date (None when v1 is not listed), updated = the highest vN's date.
* ``is_withdrawn: true`` records are skipped. Repeated ids keep the first record.
* ``since``/``until`` (inclusive days, UTC) filter on the v1 date (the earliest listed
  version's when v1 is missing), else ``update_date``; records with no date at all are kept
  and counted in ``report.undated``.
* ``archives`` filters on the primary (first) category's archive, legacy names mapped
  (``cmp-lg`` counts as ``cs``).
* ``v1_date`` (``YYYY-MM-DD``, an extra key of ../shared/data/arxiv-corpus) stands in for
  v1's date when ``versions`` is null, before ``update_date``.

``path`` may be one file, a directory (its ``*.jsonl``, ``*.json`` holding JSON lines, and
their ``.gz`` files, in name order) or a list of either: the files are read one after
another as one stream, with one report and one set of ids (a paper in two parts is kept
once). Malformed-line reasons then start with the file's name.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from pydantic import ValidationError

from core.errors import FeedParseError, MessageError
from core.schemas import Paper
from core.taxonomy import archive_of
from ingest.text import clean_text

log = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class SnapshotReport:
    """What happened to every line. read = yielded + skipped_withdrawn + duplicates
    + filtered + len(malformed), unless ``max_samples`` stopped the read early."""

    read: int = 0
    """Non-blank lines read."""
    yielded: int = 0
    skipped_withdrawn: int = 0
    duplicates: int = 0
    filtered: int = 0
    """Dropped by ``since``/``until``/``archives``."""
    undated: int = 0
    """Records with no date at all (kept, and also counted in ``yielded``)."""
    malformed: list[tuple[int, str]] = field(default_factory=list)
    """(1-based line number, reason)."""

    def __str__(self) -> str:
        return (
            f"read {self.read}, yielded {self.yielded} ({self.undated} undated), "
            f"withdrawn {self.skipped_withdrawn}, duplicates {self.duplicates}, "
            f"filtered {self.filtered}, malformed {len(self.malformed)}"
        )


class _Malformed(Exception):
    pass


SnapshotSource = str | Path | Sequence[str | Path]
_SNAPSHOT_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")


def snapshot_files(source: SnapshotSource) -> list[Path]:
    """The files ``source`` names: a file, a directory's snapshot files (name order), or a
    list of either. Raises FileNotFoundError (one line, naming the path) for a missing path
    and for a directory without snapshot files."""
    items = [source] if isinstance(source, (str, Path)) else list(source)
    files: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            found = sorted(
                p
                for p in item.iterdir()
                if p.name.endswith(_SNAPSHOT_SUFFIXES) and _lines_of_json(p)
            )
            if not found:
                raise FileNotFoundError(f"{item}: no snapshot files (*.json[l][.gz]) in it")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such snapshot file or directory")
    if not files:
        raise FileNotFoundError("no snapshot file given")
    return files


def _lines_of_json(path: Path) -> bool:
    """A directory's ``*.json`` may be a pretty-printed document (the corpus's stats.json),
    not JSON lines: keep files whose first line is a whole JSON object."""
    if not path.name.endswith(".json"):
        return True
    with open(path, "rb") as raw:
        first = raw.readline(1_000_000)
    try:
        return isinstance(orjson.loads(first), dict)
    except orjson.JSONDecodeError:
        return False


def read_snapshot(
    path: SnapshotSource,
    *,
    max_samples: int | None = None,
    since: date | None = None,
    until: date | None = None,
    archives: Collection[str] | None = None,
    report: SnapshotReport | None = None,
) -> Iterator[Paper]:
    """Yield the snapshot's papers (source="snapshot") in file order; see the module docstring.

    ``report`` is filled in as the iterator advances; pass one in to see what was skipped.
    """
    report = report if report is not None else SnapshotReport()
    files = snapshot_files(path)
    wanted = {archive_of(a) for a in archives} if archives is not None else None
    seen: set[str] = set()
    for file in files:
        if max_samples is not None and report.yielded >= max_samples:
            break
        prefix = f"{file.name}: " if len(files) > 1 else ""
        for line_no, line in _numbered_lines(file):
            if max_samples is not None and report.yielded >= max_samples:
                break
            if not line or line.isspace():  # isspace stops at the first other byte
                continue
            report.read += 1
            try:
                record = _record(line)
                paper, day = _paper(record)
            except _Malformed as exc:
                report.malformed.append((line_no, prefix + str(exc)))
                continue
            if paper.arxiv_id in seen:
                report.duplicates += 1
                continue
            seen.add(paper.arxiv_id)
            if record.get("is_withdrawn") is True:
                report.skipped_withdrawn += 1
                continue
            if not _wanted(paper, day, since, until, wanted):
                report.filtered += 1
                continue
            if day is None:
                report.undated += 1
            report.yielded += 1
            yield paper
    log.info("snapshot %s: %s", ", ".join(map(str, files)), report)
    if report.read and len(report.malformed) == report.read:
        first_line, first_reason = report.malformed[0]
        raise FeedParseError(
            f"{', '.join(map(str, files))}: not a Kaggle-format snapshot: none of its "
            f"{report.read} lines is a paper record (line {first_line}: {first_reason})"
        )


def _numbered_lines(file: Path) -> Iterator[tuple[int, bytes]]:
    with open(file, "rb") as raw:
        yield from enumerate(_lines(raw), start=1)


def _lines(raw: BinaryIO) -> Iterator[bytes]:
    """Lines of the file, gunzipped when it starts with gzip's magic bytes (not by name)."""
    magic = raw.read(2)
    raw.seek(0)
    if magic == _GZIP_MAGIC:
        with gzip.GzipFile(fileobj=raw) as unzipped:
            yield from unzipped
    else:
        yield from raw


def _record(line: bytes) -> dict[str, Any]:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise _Malformed(f"bad JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise _Malformed(f"not a JSON object but {type(record).__name__}")
    for key in ("id", "title", "categories"):
        value = record.get(key)
        if not isinstance(value, str) or not value.strip():
            raise _Malformed(f"missing {key}")
    return record


def _paper(record: dict[str, Any]) -> tuple[Paper, datetime | None]:
    """The Paper and the day it is filtered by (v1, else earliest version, else update_date)."""
    try:
        versions = _versions(record.get("versions"))
        update_date = _day(record.get("update_date"))
        first = versions.get(1) or _day(record.get("v1_date"))
        paper = Paper(
            arxiv_id=record["id"],
            version=max(versions, default=1),
            title=clean_text(record["title"]) or "",
            abstract=clean_text(record.get("abstract")),
            authors=clean_text(record.get("authors")),
            categories=record["categories"].split(),
            submitted=first,
            updated=versions[max(versions)] if versions else (update_date or first),
            doi=clean_text(record.get("doi")),
            journal_ref=clean_text(record.get("journal-ref")),
            source="snapshot",
        )
    except (ValidationError, MessageError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise _Malformed(f"{record['id']}: {exc}") from exc
    return paper, versions[min(versions)] if versions else (first or update_date)


def _versions(value: object) -> dict[int, datetime]:
    """``[{"version": "v2", "created": ...}, ...]`` -> {2: datetime, ...} (null -> {})."""
    if value is None:
        return {}
    if not isinstance(value, list):
        raise ValueError(f"versions is a {type(value).__name__}")
    versions = {}
    for position, entry in enumerate(value, start=1):
        number = int(str(entry.get("version") or f"v{position}").lstrip("v"))
        versions[number] = _version_date(entry["created"])
    return versions


_MONTH_NAMES = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, start=1)}


def _version_date(text: str) -> datetime:
    """Both spellings seen in the data, as aware UTC datetimes. The two exact shapes the
    snapshot uses are parsed by hand (strptime and the email parser cost a quarter of the
    reader's time); anything else goes to the general parsers."""
    text = text.strip()
    if text[:4].isdigit():  # arXiv DB: "2007-04-02 19:18:42", zone unstated -> UTC
        value = datetime.fromisoformat(text)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    parts = text.split()  # Kaggle / .abs: "Mon, 2 Apr 2007 19:18:42 GMT"
    if len(parts) == 6 and parts[5] == "GMT" and parts[2] in _MONTHS and len(parts[4]) == 8:
        hh, mm, ss = parts[4].split(":")
        return datetime(
            int(parts[3]), _MONTHS[parts[2]], int(parts[1]), int(hh), int(mm), int(ss), tzinfo=UTC
        )
    value = parsedate_to_datetime(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _day(value: object) -> datetime | None:
    if not value:
        return None
    return _midnight(str(value))


@lru_cache(maxsize=8192)
def _midnight(day: str) -> datetime:
    """Days repeat across records (``update_date``, ``v1_date``): each is parsed once."""
    return datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=UTC)


def _wanted(
    paper: Paper,
    day: datetime | None,
    since: date | None,
    until: date | None,
    archives: set[str] | None,
) -> bool:
    if archives is not None and archive_of(paper.categories[0]) not in archives:
        return False
    if day is None:
        return True
    if since is not None and day.date() < _as_day(since):
        return False
    return not (until is not None and day.date() > _as_day(until))


def _as_day(value: date) -> date:
    return value.date() if isinstance(value, datetime) else value
