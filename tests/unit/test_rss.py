"""parse_rss on the real rss.arxiv.org feeds recorded on 28 Nov 2024 (../shared/data/rss)."""

from __future__ import annotations

import collections
import gzip
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.errors import ConfigError, FeedError, FeedParseError
from core.schemas import Paper
from ingest.rss import parse_rss, rss_url
from ingest.text import clean_text

FEEDS = "rss/aioarxiv-2024-11-28"


@pytest.fixture(scope="module")
def feed_bytes(shared_data: Path) -> bytes:
    return (shared_data / FEEDS / "rss_all-archives_2024-11-28.xml").read_bytes()


@pytest.fixture(scope="module")
def papers(feed_bytes: bytes) -> list[Paper]:
    return parse_rss(feed_bytes)


@pytest.fixture(scope="module")
def by_id(papers: list[Paper]) -> dict[str, Paper]:
    return {p.arxiv_id: p for p in papers}


def _raw_items(feed: bytes) -> list[str]:
    """The <item> blocks, cut out with a regex: an account of the file independent of feedparser."""
    return re.findall(r"<item>(.*?)</item>", feed.decode(), flags=re.DOTALL)


def test_every_item_becomes_one_paper(feed_bytes: bytes, papers: list[Paper]) -> None:
    assert len(papers) == len(_raw_items(feed_bytes)) == 1504
    assert len({p.arxiv_id for p in papers}) == 1504
    assert {p.source for p in papers} == {"rss"}


def test_announce_types_match_the_file(feed_bytes: bytes, papers: list[Paper]) -> None:
    in_file = collections.Counter(re.findall(r"<arxiv:announce_type>([^<]+)<", feed_bytes.decode()))
    parsed = collections.Counter(p.announce_type for p in papers)
    assert parsed == in_file == {"new": 926, "replace": 569, "cross": 9}


def test_ids_versions_and_categories_match_each_item(
    feed_bytes: bytes, papers: list[Paper]
) -> None:
    for item, paper in zip(_raw_items(feed_bytes), papers, strict=True):
        guid = re.search(r"<guid[^>]*>oai:arXiv.org:(\S+)v(\d+)</guid>", item)
        assert guid is not None
        assert (paper.arxiv_id, paper.version) == (guid.group(1), int(guid.group(2)))
        assert paper.categories == re.findall(r"<category>([^<]+)</category>", item)


def test_a_new_submission_read_field_by_field(by_id: dict[str, Paper]) -> None:
    paper = by_id["2411.17700"]
    assert paper.version == 1
    assert paper.title.startswith("Exploring the Impact of Generative AI on Cross-Border")
    assert paper.abstract is not None
    assert paper.abstract.startswith("This study investigates the influence of generative")
    assert paper.abstract.endswith("regression and structural equations (PLS-SEM).")
    assert paper.authors == "Jun Cui"
    assert paper.categories == ["cs.CY"]
    assert paper.announce_type == "new"
    # pubDate "Thu, 28 Nov 2024 00:00:00 -0500": the announcement, not the submission.
    assert paper.updated == datetime(2024, 11, 28, 5, 0, tzinfo=UTC)
    assert paper.submitted is None


def test_a_cross_list_keeps_feed_order_doi_and_journal_ref(by_id: dict[str, Paper]) -> None:
    paper = by_id["2405.12090"]
    assert paper.announce_type == "cross"
    assert paper.version == 3
    assert paper.categories == ["physics.acc-ph", "astro-ph.IM", "physics.optics"]
    assert paper.doi == "10.1103/PhysRevAccelBeams.27.112802"
    assert paper.journal_ref == "Phys. Rev. Accel. Beams 27, (2024) 112802"
    assert paper.authors is not None and paper.authors.startswith("Bojan Nikolic, ")


def test_doi_and_journal_ref_counts_match_the_file(feed_bytes: bytes, papers: list[Paper]) -> None:
    text = feed_bytes.decode()
    assert sum(p.doi is not None for p in papers) == text.count("<arxiv:DOI>") == 111
    assert sum(p.journal_ref is not None for p in papers) == text.count("<arxiv:journal_reference>")


def test_latex_comparisons_and_ampersands_survive(papers: list[Paper]) -> None:
    """feedparser's default HTML sanitizer turns `$\\frac{1}{3}<s<1$` into `<s><1`."""
    abstracts = [p.abstract or "" for p in papers]
    assert any(r"$\frac{1}{3}<s<1$" in a for a in abstracts)
    assert any("(E&E)" in a for a in abstracts)
    assert not any("<s><1" in a or "&amp;" in a for a in abstracts)


def test_text_is_single_spaced(feed_bytes: bytes, papers: list[Paper]) -> None:
    assert "\nAbstract: " in feed_bytes.decode()  # the raw descriptions are multi-line
    for paper in papers:
        for text in (paper.title, paper.abstract or "", paper.authors or ""):
            assert "\n" not in text and "  " not in text and text == text.strip()
        assert paper.abstract and not paper.abstract.startswith("arXiv:")


def test_agrees_with_the_independent_conversion_in_the_sample(
    shared_data: Path, by_id: dict[str, Paper]
) -> None:
    """The sample's 1,504 RSS-derived records were converted from this feed by other code."""
    sources = shared_data / "arxiv-sample" / "sources.tsv"
    rss_ids = {
        line.split("\t")[0]
        for line in sources.read_text().splitlines()
        if "\trss-aioarxiv-2024-11-28\t" in line
    }
    sample = shared_data / "arxiv-sample" / "arxiv-metadata-sample.jsonl.gz"
    checked = 0
    with gzip.open(sample, "rt") as lines:
        for line in lines:
            record = json.loads(line)
            if record["id"] not in rss_ids:
                continue
            paper = by_id[record["id"]]
            assert paper.title == clean_text(record["title"])
            assert paper.abstract == clean_text(record["abstract"])
            assert paper.categories == record["categories"].split()
            assert (paper.doi, paper.journal_ref) == (record["doi"], record["journal-ref"])
            checked += 1
    assert checked == len(rss_ids) == 1504


def test_error_feed_raises_feed_error_with_arxivs_message(shared_data: Path) -> None:
    data = (shared_data / FEEDS / "rss_error_bad-archive-astroph_2024-11-28.xml").read_bytes()
    with pytest.raises(FeedError, match="Bad archive 'astroph'") as caught:
        parse_rss(data)
    assert not isinstance(caught.value, FeedParseError)


def test_empty_feed_is_an_empty_list(shared_data: Path) -> None:
    data = (shared_data / FEEDS / "rss_empty_test-archive_2024-11-28.xml").read_bytes()
    assert b"<channel>" in data and b"<item>" not in data
    assert parse_rss(data) == []


@pytest.mark.parametrize(
    "relative",
    [
        "oai-pmh/paperhive-oai-pmh-2018/ListRecords_arXiv_2015-01-01_2015-01-03_HTTP503.html",
        "oai-pmh/paperhive-oai-pmh-2018/Identify.xml",
        "atom/arxiv.py-fixtures/q_testing_s0_m10_bc5a6c384fe9.xml",
    ],
)
def test_other_documents_are_not_rss(shared_data: Path, relative: str) -> None:
    with pytest.raises(FeedParseError):
        parse_rss((shared_data / relative).read_bytes())


@pytest.mark.parametrize("data", [b"", b'{"json": true}', b"\x00\x01 not xml"])
def test_garbage_is_not_rss(data: bytes) -> None:
    with pytest.raises(FeedParseError):
        parse_rss(data)


def test_a_truncated_download_is_rejected_not_half_read(feed_bytes: bytes) -> None:
    with pytest.raises(FeedParseError, match="malformed"):
        parse_rss(feed_bytes[:50_000])


def test_rss_url_joins_categories_with_plus() -> None:
    url = rss_url("https://rss.arxiv.org/rss/", ["cs", "math.AG", " hep-th "])
    assert url == "https://rss.arxiv.org/rss/cs+math.AG+hep-th"
    with pytest.raises(ConfigError):
        rss_url("https://rss.arxiv.org/rss", [])


def test_an_item_over_the_input_limits_is_skipped_naming_it_and_the_feed_goes_on(
    feed_bytes: bytes, papers: list[Paper], caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 8 (1): a 5 MB abstract made the ingester crash-loop, naming no paper."""
    text = feed_bytes.decode()
    first = re.search(r"<item>.*?<description>", text, flags=re.DOTALL)
    assert first is not None
    huge = text[: first.end()] + "x " * 2_500_000 + text[first.end() :]
    kept = parse_rss(huge.encode())
    assert len(kept) == len(papers) - 1
    assert kept[0].arxiv_id == papers[1].arxiv_id
    assert "skipped RSS item" in caplog.text and papers[0].arxiv_id in caplog.text
