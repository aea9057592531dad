"""read_snapshot on the real 5,234-record sample and on small generated files."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from core.errors import FeedParseError
from core.schemas import Paper
from ingest.snapshot import SnapshotReport, read_snapshot

SAMPLE = "arxiv-sample/arxiv-metadata-sample.jsonl.gz"


@pytest.fixture(scope="module")
def raw_records(shared_data: Path) -> list[dict[str, object]]:
    with gzip.open(shared_data / SAMPLE, "rt") as lines:
        return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def sample(shared_data: Path) -> tuple[dict[str, Paper], SnapshotReport]:
    report = SnapshotReport()
    papers = {p.arxiv_id: p for p in read_snapshot(shared_data / SAMPLE, report=report)}
    return papers, report


def _assert_balanced(report: SnapshotReport) -> None:
    assert report.read == (
        report.yielded
        + report.skipped_withdrawn
        + report.duplicates
        + report.filtered
        + len(report.malformed)
    )


def test_the_real_sample_is_read_whole(
    shared_data: Path,
    raw_records: list[dict[str, object]],
    sample: tuple[dict[str, Paper], SnapshotReport],
) -> None:
    papers, report = sample
    stats = json.loads((shared_data / "arxiv-sample/stats.json").read_text())
    withdrawn = [r["id"] for r in raw_records if r.get("is_withdrawn") is True]
    assert report.read == len(raw_records) == stats["records"] == 5234
    assert report.skipped_withdrawn == len(withdrawn) == 14
    assert (report.duplicates, report.filtered, report.malformed) == (0, 0, [])
    assert report.yielded == len(papers) == 5234 - 14
    assert not set(withdrawn) & set(papers)
    undated = [r for r in raw_records if r["versions"] is None and r["update_date"] is None]
    assert report.undated == len(undated) == 1630
    _assert_balanced(report)
    assert {p.source for p in papers.values()} == {"snapshot"}


def test_text_is_single_spaced_as_in_the_other_sources(
    sample: tuple[dict[str, Paper], SnapshotReport],
) -> None:
    papers, _ = sample
    first = papers["0704.0001"]
    assert first.title == (
        "Calculation of prompt diphoton production cross sections at Tevatron and LHC energies"
    )
    assert first.abstract is not None and first.abstract.startswith("A fully differential")
    for paper in papers.values():
        for text in (paper.title, paper.abstract or ""):
            assert "\n" not in text and "  " not in text and text == text.strip()


def test_rfc2822_versions(sample: tuple[dict[str, Paper], SnapshotReport]) -> None:
    paper = sample[0]["0704.0001"]
    assert paper.version == 2
    assert paper.submitted == datetime(2007, 4, 2, 19, 18, 42, tzinfo=UTC)
    assert paper.updated == datetime(2007, 7, 24, 20, 10, 27, tzinfo=UTC)
    assert paper.categories == ["hep-ph"]
    assert (paper.doi, paper.journal_ref) == (
        "10.1103/PhysRevD.76.013009",
        "Phys.Rev.D76:013009,2007",
    )


def test_db_format_versions_are_utc(sample: tuple[dict[str, Paper], SnapshotReport]) -> None:
    paper = sample[0]["0704.3507"]  # "created": "2007-04-26 10:55:33"
    assert paper.version == 1
    assert paper.submitted == paper.updated == datetime(2007, 4, 26, 10, 55, 33, tzinfo=UTC)


def test_versions_in_string_order_or_missing_v1(
    sample: tuple[dict[str, Paper], SnapshotReport],
) -> None:
    papers, _ = sample
    sun = papers["1204.6689"]  # listed v1, v10, v11, v12, v13, v2, ..., v9
    assert sun.version == 13
    assert sun.submitted == datetime(2012, 4, 30, 16, 26, 38, tzinfo=UTC)
    assert sun.updated == datetime(2016, 10, 20, 7, 58, 56, tzinfo=UTC)
    melbourne = papers["1008.4113"]  # only v3 in arXiv's test DB
    assert melbourne.version == 3
    assert melbourne.submitted is None
    assert melbourne.updated == datetime(2015, 4, 11, 12, 27, 19, tzinfo=UTC)


def test_update_date_stands_in_when_versions_are_null(
    sample: tuple[dict[str, Paper], SnapshotReport],
) -> None:
    paper = sample[0]["1412.8544"]  # from OAI (arXiv format): versions null, update_date set
    assert (paper.version, paper.submitted) == (1, None)
    assert paper.updated == datetime(2015, 1, 3, tzinfo=UTC)


def test_archive_filter_on_the_sample(
    shared_data: Path, raw_records: list[dict[str, object]]
) -> None:
    stats = json.loads((shared_data / "arxiv-sample/stats.json").read_text())
    withdrawn_primaries = Counter(
        str(r["categories"]).split()[0].split(".")[0]
        for r in raw_records
        if r.get("is_withdrawn") is True
    )
    report = SnapshotReport()
    papers = list(read_snapshot(shared_data / SAMPLE, archives={"q-fin", "econ"}, report=report))
    expected = sum(stats["primary_archive"][a] - withdrawn_primaries[a] for a in ("q-fin", "econ"))
    assert len(papers) == expected > 0
    assert {p.categories[0].split(".")[0] for p in papers} == {"q-fin", "econ"}
    _assert_balanced(report)


def test_max_samples_stops_early(shared_data: Path) -> None:
    report = SnapshotReport()
    papers = list(read_snapshot(shared_data / SAMPLE, max_samples=25, report=report))
    assert len(papers) == report.yielded == 25
    assert report.read < 100


# --- generated files --------------------------------------------------------------------


def _record(arxiv_id: str, *, categories: str = "math.CO", **fields: object) -> str:
    record: dict[str, object] = {
        "id": arxiv_id,
        "submitter": None,
        "authors": "A. Author and\n  B. Author",
        "title": f"Title of\n  {arxiv_id}",
        "comments": None,
        "journal-ref": None,
        "doi": None,
        "report-no": None,
        "categories": categories,
        "license": None,
        "abstract": "  First line\nsecond line.\n",
        "versions": [{"version": "v1", "created": "Mon, 2 Apr 2007 19:18:42 GMT"}],
        "update_date": None,
        "authors_parsed": None,
    }
    record.update(fields)
    return json.dumps(record)


LINES = [
    _record("0704.0001"),  # 1
    _record(
        "1101.0002",
        categories="cs.LG stat.ML",
        versions=[
            {"version": "v1", "created": "2011-01-03 10:00:00"},
            {"version": "v2", "created": "2012-06-30 23:59:59"},
        ],
    ),  # 2: arXiv DB date format
    '{"id": "0704.0003", "title": ',  # 3: cut-off JSON
    "[1, 2]",  # 4: not an object
    _record("0704.0004", title=None),  # 5: no title
    _record("0704.0001", title="A second copy"),  # 6: duplicate, first kept
    _record("1006.3184", is_withdrawn=True),  # 7
    "",  # 8: blank, ignored
    _record("1501.00009", versions=None, update_date=None),  # 9: no date at all
    _record("not-an-id"),  # 10
    _record("1501.00011", versions=[{"version": "v1", "created": "yesterday"}]),  # 11
    _record("cmp-lg/9404001", categories="cmp-lg", versions=None, update_date="1994-04-05"),
    # 12: legacy archive, dated by update_date only
]


@pytest.fixture(params=["plain", "gzip"])
def generated(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Named the wrong way round on purpose: the format is told by magic bytes, not names."""
    body = ("\n".join(LINES) + "\n").encode()
    if request.param == "gzip":
        path = tmp_path / "snapshot.json"
        path.write_bytes(gzip.compress(body))
    else:
        path = tmp_path / "snapshot.json.gz"
        path.write_bytes(body)
    return path


def test_generated_file_report(generated: Path) -> None:
    report = SnapshotReport()
    papers = list(read_snapshot(generated, report=report))
    assert [p.arxiv_id for p in papers] == [
        "0704.0001",
        "1101.0002",
        "1501.00009",
        "cmp-lg/9404001",
    ]
    assert papers[0].title == "Title of 0704.0001"  # the first copy, cleaned
    assert papers[0].abstract == "First line second line."
    assert papers[0].authors == "A. Author and B. Author"
    assert report.read == 11
    assert (report.duplicates, report.skipped_withdrawn, report.filtered) == (1, 1, 0)
    assert report.undated == 1
    assert [line for line, _ in report.malformed] == [3, 4, 5, 10, 11]
    reasons = dict(report.malformed)
    assert "bad JSON" in reasons[3]
    assert "not a JSON object" in reasons[4]
    assert "missing title" in reasons[5]
    assert "not-an-id" in reasons[10]
    assert "1501.00011" in reasons[11]
    _assert_balanced(report)


def test_generated_dates(generated: Path) -> None:
    papers = {p.arxiv_id: p for p in read_snapshot(generated)}
    db = papers["1101.0002"]
    assert db.version == 2
    assert db.submitted == datetime(2011, 1, 3, 10, 0, tzinfo=UTC)
    assert db.updated == datetime(2012, 6, 30, 23, 59, 59, tzinfo=UTC)
    assert papers["1501.00009"].submitted is papers["1501.00009"].updated is None
    assert papers["cmp-lg/9404001"].updated == datetime(1994, 4, 5, tzinfo=UTC)


def test_since_until_filter_on_v1_day_and_keep_undated(generated: Path) -> None:
    report = SnapshotReport()
    kept = read_snapshot(generated, since=date(2011, 1, 3), until=date(2011, 1, 3), report=report)
    # 1101.0002's v1 is that very day (bounds are inclusive); its v2 date does not matter
    assert [p.arxiv_id for p in kept] == ["1101.0002", "1501.00009"]
    assert (report.filtered, report.undated) == (2, 1)
    _assert_balanced(report)
    later = read_snapshot(generated, since=datetime(2011, 1, 4, tzinfo=UTC))
    assert [p.arxiv_id for p in later] == ["1501.00009"]


def test_archive_filter_maps_legacy_archives(generated: Path) -> None:
    report = SnapshotReport()
    papers = list(read_snapshot(generated, archives=["cs"], report=report))
    assert [p.arxiv_id for p in papers] == ["1101.0002", "cmp-lg/9404001"]
    assert report.filtered == 2


def test_reading_is_lazy_line_by_line(generated: Path) -> None:
    report = SnapshotReport()
    papers = read_snapshot(generated, report=report)
    assert report.read == 0
    assert next(papers).arxiv_id == "0704.0001"
    assert report.read == 1


def _write_lines(path: Path, records: list[object], *, gz: bool = False) -> Path:
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _record(arxiv_id: str, **extra: object) -> dict[str, object]:
    return {"id": arxiv_id, "title": f"Paper {arxiv_id}", "categories": "cs.LG",
            "abstract": "An abstract.", "versions": None, **extra}  # fmt: skip


def test_several_files_and_a_directory_read_as_one_stream(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    _write_lines(
        folder / "part01.jsonl.gz", [_record("2401.00001"), _record("2401.00002")], gz=True
    )
    _write_lines(folder / "part02.jsonl", [_record("2401.00002"), _record("2401.00003")])
    (folder / "README.md").write_text("not a snapshot")
    (folder / "stats.json").write_text('{\n "records": 4\n}\n')  # pretty JSON, not lines
    report = SnapshotReport()
    ids = [p.arxiv_id for p in read_snapshot(folder, report=report)]
    assert ids == ["2401.00001", "2401.00002", "2401.00003"]  # name order; one copy of each
    assert report.duplicates == 1 and report.read == 4
    listed = [folder / "part02.jsonl", folder / "part01.jsonl.gz"]
    assert [p.arxiv_id for p in read_snapshot(listed)] == ["2401.00002", "2401.00003", "2401.00001"]
    assert [p.arxiv_id for p in read_snapshot(folder, max_samples=2)] == ids[:2]
    with pytest.raises(FileNotFoundError, match="no such snapshot"):
        list(read_snapshot([folder, tmp_path / "missing.jsonl"]))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no snapshot files"):
        list(read_snapshot(empty))


def test_v1_date_stands_in_when_versions_is_null(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "c.jsonl", [
        _record("2401.00001", v1_date="2024-01-02", update_date="2024-05-01"),
        _record("2401.00002", update_date="2024-05-01"),
    ])  # fmt: skip
    first, second = read_snapshot(path, since=date(2024, 1, 1))
    assert first.submitted == datetime(2024, 1, 2, tzinfo=UTC)
    assert first.updated == datetime(2024, 5, 1, tzinfo=UTC)
    assert second.submitted is None and second.updated == datetime(2024, 5, 1, tzinfo=UTC)
    assert list(read_snapshot(path, until=date(2024, 1, 31))) == [first]  # filtered by v1


def test_the_real_corpus_parts_read_with_v1_dates(shared_data: Path) -> None:
    part = shared_data / "arxiv-corpus" / "arxiv-corpus-part01.jsonl.gz"
    if not part.exists():
        pytest.skip("no ../shared/data/arxiv-corpus here")
    papers = list(read_snapshot(part, max_samples=2000))
    assert len(papers) == 2000
    dated = sum(p.submitted is not None for p in papers)
    assert dated / len(papers) > 0.7  # README: v1_date on ~82% of records


def test_poison_records_are_malformed_lines_not_a_lost_chunk(tmp_path: Path) -> None:
    """Issue 8 (2): NUL in a title and version 2^31 aborted `ingest snapshot` with a
    traceback. NUL is dropped; an out-of-range version is one malformed line."""
    path = _write_lines(tmp_path / "p.jsonl", [
        _record("2401.00001", title="NUL\u0000 inside"),
        _record("2401.00002", versions=[{"version": f"v{2**31}", "created": "2024-01-01 0:0:0"}]),
        _record("2401.00003", abstract="x" * 30_000),
        _record("2401.00004"),
    ])  # fmt: skip
    report = SnapshotReport()
    papers = list(read_snapshot(path, report=report))
    assert [p.arxiv_id for p in papers] == ["2401.00001", "2401.00004"]
    assert papers[0].title == "NUL inside"
    assert [line for line, _ in report.malformed] == [2, 3]


@pytest.mark.parametrize("damage", ["cut", "garbled"])
def test_a_damaged_gzip_is_one_clear_error_after_the_lines_before_it(
    tmp_path: Path, damage: str
) -> None:
    body = "".join(json.dumps(_record(f"2401.{i:05d}")) + "\n" for i in range(3000)).encode()
    packed = bytearray(gzip.compress(body))
    if damage == "cut":
        packed = packed[: len(packed) // 2]  # a download that stopped half way
    else:
        packed[len(packed) // 2 : len(packed) // 2 + 64] = b"x" * 64
    path = tmp_path / "part.jsonl.gz"
    path.write_bytes(bytes(packed))
    read: list[Paper] = []
    with pytest.raises(FeedParseError, match=r"part.jsonl.gz: damaged gzip after line \d+"):
        read.extend(read_snapshot(path))
    assert 0 < len(read) < 3000  # what came before the damage was read, not dropped


def test_a_file_with_no_record_at_all_is_refused(tmp_path: Path) -> None:
    html = tmp_path / "page.json"
    html.write_text("<!doctype html>\n<html><body>Not found</body></html>\n")
    with pytest.raises(FeedParseError, match="not a Kaggle-format snapshot"):
        list(read_snapshot(html))


@pytest.mark.parametrize(
    "text",
    [
        "Mon, 2 Apr 2007 19:18:42 GMT",
        "Tue, 31 Dec 1991 23:59:59 GMT",
        "  Wed, 1 Jan 2025 00:00:00 GMT ",
        "2007-04-02 19:18:42",
        "Mon, 2 Apr 2007 19:18:42 +0200",  # not the snapshot's shape: the general parser
        "2 Apr 2007 19:18:42 GMT",
    ],
)
def test_the_fast_date_path_agrees_with_the_general_parsers(text: str) -> None:
    from email.utils import parsedate_to_datetime

    from ingest.snapshot import _version_date

    stripped = text.strip()
    if stripped[:4].isdigit():
        expected = datetime.strptime(stripped, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    else:
        expected = parsedate_to_datetime(stripped).astimezone(UTC)
    assert _version_date(text) == expected
    assert _version_date(text).tzinfo == UTC


def test_clean_text_fast_path_equals_splitting_on_every_whitespace() -> None:
    import random

    from ingest.text import clean_text

    rng = random.Random(7)
    # every ASCII character (controls too: str.split takes \x1c-\x1f as whitespace) and some
    # Unicode spaces
    alphabet = "".join(map(chr, range(128))) + "  \u00a0\u2003\u3000é"
    cases = [
        "a  b",
        "a\x0cb",
        " x ",
        "plain text",
        "",
        " ",
        "\x1cx\x1d",
        "a\u00a0b",
        "  a\nb\n",
        "a \nb",
    ]
    cases += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(5000)]
    for text in cases:
        assert clean_text(text) == (" ".join(text.split()) or None), repr(text)
