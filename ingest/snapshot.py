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

import contextlib
import io
import logging
import zlib
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from gzip import BadGzipFile
from pathlib import Path
from typing import IO, Any

import msgspec
import orjson
from isal import igzip  # ISA-L's inflate: gzip at a third of zlib's CPU (bench/reader.py)
from isal.isal_zlib import error as IsalError
from pydantic import ValidationError

from core.errors import FeedParseError, MessageError
from core.schemas import NUL_FREE, Paper
from core.taxonomy import archive_of
from ingest.text import clean_text

log = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"
_DAMAGED_GZIP: tuple[type[BaseException], ...] = (EOFError, BadGzipFile, zlib.error, IsalError)  # type: ignore[assignment]
_NUL_ESCAPE = b"\\u0000"
"""How JSON spells U+0000 (a raw control character is invalid JSON, refused at decoding)."""


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
    filtering = since is not None or until is not None or wanted is not None
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
                paper, day = _paper(record, nul_free=_NUL_ESCAPE not in line)
            except _Malformed as exc:
                report.malformed.append((line_no, prefix + str(exc)))
                continue
            if paper.arxiv_id in seen:
                report.duplicates += 1
                continue
            seen.add(paper.arxiv_id)
            if record.is_withdrawn is True:
                report.skipped_withdrawn += 1
                continue
            if filtering and not _wanted(paper, day, since, until, wanted):
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
    """(1-based number, line) of the file, gunzipped when it starts with gzip's magic bytes
    (not by name). A damaged gzip (a cut download) is one FeedParseError after the lines
    before the damage."""
    line_no = 0
    with open(file, "rb") as raw, contextlib.ExitStack() as closing:
        lines: IO[bytes] = raw
        magic = raw.read(2)
        raw.seek(0)
        if magic == _GZIP_MAGIC:
            unzipped = closing.enter_context(igzip.open(raw, "rb"))  # type: ignore[no-untyped-call]
            # GzipFile.readline is Python; a C buffer in front of it splits lines in C and
            # reads 64 KB at a time (~3% of the reader's CPU).
            lines = io.BufferedReader(unzipped, buffer_size=1 << 16)
        try:
            for line_no, line in enumerate(lines, start=1):
                yield line_no, line
        except _DAMAGED_GZIP as exc:
            raise FeedParseError(
                f"{file}: damaged gzip after line {line_no} ({exc}); the lines before it were read"
            ) from exc


class _Version(msgspec.Struct):
    created: str
    version: str | int | None = None


class _Record(msgspec.Struct):
    """The fields of a snapshot line that the reader uses, typed. msgspec decodes a line
    straight into this and skips the other fields without building them (``authors_parsed``
    is a list of lists per author). ``id``, ``title`` and ``categories`` are checked by
    hand, so that their absence reads "missing title"."""

    id: Any = None
    title: Any = None
    categories: Any = None
    abstract: str | None = None
    authors: str | None = None
    doi: str | None = None
    journal_ref: str | None = msgspec.field(default=None, name="journal-ref")
    versions: list[_Version] | None = None
    update_date: str | None = None
    v1_date: str | None = None
    is_withdrawn: Any = None


_decode_record = msgspec.json.Decoder(_Record).decode


def _record(line: bytes) -> _Record:
    try:
        record = _decode_record(line)
    except msgspec.ValidationError as exc:  # JSON, but not a record of the right types
        text = str(exc)
        raise _Malformed(text if " - at `$" in text else f"not a JSON object: {text}") from exc
    except msgspec.DecodeError as exc:
        raise _Malformed(f"bad JSON: {exc}") from exc
    # Three explicit tests, not a loop over (name, value) pairs: this runs for every line.
    if not isinstance(record.id, str) or not record.id.strip():
        raise _Malformed("missing id")
    if not isinstance(record.title, str) or not record.title.strip():
        raise _Malformed("missing title")
    if not isinstance(record.categories, str) or not record.categories.strip():
        raise _Malformed("missing categories")
    return record


def _paper(record: _Record, *, nul_free: bool) -> tuple[Paper, datetime | None]:
    """The Paper and the day it is filtered by (v1, else earliest version, else update_date).
    Only the dates used are parsed: v1's (or the earliest listed), the latest's, and
    ``update_date`` / ``v1_date`` only when ``versions`` does not give them (so a garbled
    date of a middle version is not noticed). ``nul_free``: the line holds no U+0000, so
    Paper need not look for one."""
    try:
        versions = _versions(record.versions) if record.versions else None
        v1_date, update_date = record.v1_date, record.update_date
        if versions:
            earliest, latest = min(versions), max(versions)
            updated: datetime | None = _version_date(versions[latest])
            day = updated if earliest == latest else _version_date(versions[earliest])
            first = day if earliest == 1 else (_midnight(v1_date) if v1_date else None)
        else:
            latest, first = 1, _midnight(v1_date) if v1_date else None
            updated = _midnight(update_date) if update_date else first
            day = first or updated
        doi, journal_ref = record.doi, record.journal_ref  # mostly null: no call for those
        fields = {
            "arxiv_id": record.id,
            "version": latest,
            "title": clean_text(record.title) or "",
            "abstract": clean_text(record.abstract),
            "authors": clean_text(record.authors),
            "categories": record.categories.split(),
            "submitted": first,
            "updated": updated,
            "doi": clean_text(doi) if doi else None,
            "journal_ref": clean_text(journal_ref) if journal_ref else None,
            "source": "snapshot",
        }
        paper = Paper.model_validate(fields, context=NUL_FREE if nul_free else None)
    except (ValidationError, MessageError, ValueError, TypeError, AttributeError) as exc:
        raise _Malformed(f"{record.id}: {exc}") from exc
    return paper, day


def _versions(value: list[_Version]) -> dict[int, str]:
    """``[{"version": "v2", "created": ...}, ...]`` -> {2: created text, ...}."""
    return {
        int(str(entry.version or f"v{position}").lstrip("v")): entry.created
        for position, entry in enumerate(value, start=1)
    }


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
