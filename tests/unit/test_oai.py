"""parse_oai / oai_params on the real arXiv OAI-PMH responses in ../shared/data/oai-pmh."""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from core.errors import FeedParseError, OAIError
from ingest.oai import oai_params, parse_oai
from ingest.text import clean_text

LITPUVN = "oai-pmh/litpuvn-arxiv-oai-harvester-2016"
MIKE = "oai-pmh/mikesaelim-arXivOAIHarvester-2015"
PAPERHIVE = "oai-pmh/paperhive-oai-pmh-2018"
INSPIRE = "oai-pmh/inspirehep-hepcrawl"

ERROR_CODES = {
    f"{MIKE}/ErrorResponseBadArgument.xml": "badArgument",
    f"{MIKE}/ErrorResponseBadResumptionToken.xml": "badResumptionToken",
    f"{MIKE}/ErrorResponseBadVerb.xml": "badVerb",
    f"{MIKE}/ErrorResponseIdDoesNotExist.xml": "idDoesNotExist",
    f"{MIKE}/ErrorResponseNoRecordsMatch.xml": "noRecordsMatch",
}
NOT_OAI = {f"{PAPERHIVE}/ListRecords_arXiv_2015-01-01_2015-01-03_HTTP503.html"}


def _read(shared_data: Path, relative: str) -> bytes:
    return (shared_data / relative).read_bytes()


def _find(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match is not None, pattern
    return match.group(1)


def _all_responses(shared_data: Path) -> list[str]:
    root = shared_data / "oai-pmh"
    return sorted(
        str(p.relative_to(shared_data)) for p in root.glob("*/*") if p.suffix in (".xml", ".html")
    )


def test_every_recorded_response_parses_as_the_file_says(shared_data: Path) -> None:
    """Counts, ids, dates and tokens checked against a regex reading of each file."""
    responses = _all_responses(shared_data)
    assert len(responses) == 30
    assert set(ERROR_CODES) | NOT_OAI <= set(responses)
    pages = info = 0
    for relative in responses:
        data = _read(shared_data, relative)
        text = data.decode()
        if relative in NOT_OAI:
            with pytest.raises(FeedParseError):
                parse_oai(data)
            continue
        if relative in ERROR_CODES:
            with pytest.raises(OAIError) as caught:
                parse_oai(data)
            assert caught.value.code == ERROR_CODES[relative]
            assert _find(r'<error code="(\w+)"', text) == caught.value.code
            continue
        if re.search(r"<(Identify|ListSets|ListMetadataFormats|ListIdentifiers)>", text):
            with pytest.raises(FeedParseError, match="holds no records"):
                parse_oai(data)  # issue 8: these were "ingested" with exit 0
            info += 1
            continue
        page = parse_oai(data)
        pages += 1
        records = re.findall(r"<record>.*?</record>", text, flags=re.DOTALL)
        record_ids = [_find(r"<identifier>oai:arXiv.org:([^<]+)</identifier>", r) for r in records]
        assert [p.arxiv_id for p in page.papers] == record_ids, relative
        assert {p.source for p in page.papers} <= {"oai"}
        stamp = _find(r"<responseDate>([^<]+)</responseDate>", text)
        assert page.response_date == datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        assert page.response_date.tzinfo is not None
        token = re.search(r"<resumptionToken[^>]*>([^<]+)</resumptionToken>", text)
        assert page.resumption_token == (token.group(1) if token else None)
        assert page.deleted_ids == []  # no recorded response holds a deleted record
        for paper in page.papers:
            assert paper.title and "\n" not in paper.title and "  " not in paper.title
            assert paper.categories and paper.submitted is not None
    assert pages + info == len(responses) - len(ERROR_CODES) - len(NOT_OAI) == 24


def test_litpuvn_list_records_arxivraw_page(shared_data: Path) -> None:
    data = _read(shared_data, f"{LITPUVN}/ListRecords_arXivRaw_from-2016-10-20.xml")
    page = parse_oai(data)
    assert len(page.papers) == data.count(b"<record>") == 387
    assert page.resumption_token == "1403493|1001"
    assert (page.complete_list_size, page.cursor) == (1440, 0)
    assert page.response_date == datetime(2016, 10, 21, 4, 36, 53, tzinfo=UTC)
    first = page.papers[0]
    assert first.arxiv_id == "0803.4354"
    assert first.version == 6
    assert first.submitted == datetime(2008, 3, 30, 23, 26, 50, tzinfo=UTC)
    assert first.updated == datetime(2016, 10, 20, 16, 58, 38, tzinfo=UTC)
    assert (
        first.title
        == "A O(n^8) X O(n^7) Linear Programming Model of the Traveling Salesman Problem"
    )
    assert first.categories == ["cs.DM"]
    assert first.authors == "Moustapha Diaby"


def test_litpuvn_agrees_with_the_independent_conversion_in_the_sample(shared_data: Path) -> None:
    page = parse_oai(_read(shared_data, f"{LITPUVN}/ListRecords_arXivRaw_from-2016-10-20.xml"))
    by_id = {p.arxiv_id: p for p in page.papers}
    tagged = {
        line.split("\t")[0]
        for line in (shared_data / "arxiv-sample/sources.tsv").read_text().splitlines()
        if "\toai-litpuvn-arXivRaw\t" in line
    }
    checked = 0
    with gzip.open(shared_data / "arxiv-sample/arxiv-metadata-sample.jsonl.gz", "rt") as lines:
        for line in lines:
            record = json.loads(line)
            if record["id"] not in tagged:
                continue
            paper = by_id[record["id"]]
            assert paper.title == clean_text(record["title"])
            assert paper.abstract == clean_text(record["abstract"])
            assert paper.categories == record["categories"].split()
            assert paper.version == len(record["versions"])
            assert paper.submitted == parsedate_to_datetime(record["versions"][0]["created"])
            checked += 1
    assert checked == len(tagged) == 387


def test_mikesaelim_page_versions_and_primary_first(shared_data: Path) -> None:
    page = parse_oai(_read(shared_data, f"{MIKE}/ListRecordsResponse.xml"))
    assert page.resumption_token == "726959|1001"
    assert (page.complete_list_size, page.cursor) == (58011, 0)
    by_id = {p.arxiv_id: p for p in page.papers}
    assert list(by_id) == [f"0704.{n}" for n in ("0471", "0716", "0874", "1109", "1114", "1586")]
    limit = by_id["0704.0716"]
    assert limit.version == 4
    assert limit.categories == ["math-ph", "math.MP"]
    assert limit.submitted == datetime(2007, 4, 5, 12, 45, 3, tzinfo=UTC)
    assert limit.updated == datetime(2008, 11, 14, 9, 7, 25, tzinfo=UTC)
    density = by_id["0704.0471"]
    assert density.title == (
        "Density dependence of the symmetry energy and the nuclear equation of state: "
        "A Dynamical and Statistical model perspective"
    )
    assert density.version == 1 and density.submitted == density.updated
    assert density.doi == "10.1103/PhysRevC.76.024606 10.1103/PhysRevC.76.039902"  # as given
    assert density.abstract is not None and 'extremely " stiff " and " soft "' in density.abstract


def test_get_record_arxivraw(shared_data: Path) -> None:
    (paper,) = parse_oai(_read(shared_data, f"{MIKE}/GetRecordResponse.xml")).papers
    assert (paper.arxiv_id, paper.version) == ("1302.2146", 2)
    assert paper.categories == ["hep-ph", "hep-ex"]
    assert paper.authors == "Joshua Berger, Maxim Perelstein, Michael Saelim and Philip Tanedo"


def test_arxiv_format_authors_and_dates(shared_data: Path) -> None:
    page = parse_oai(_read(shared_data, f"{PAPERHIVE}/ListRecords_arXiv_2015-01-01_2015-01-03.xml"))
    kochen, planck = page.papers
    assert kochen.arxiv_id == "1412.8544"
    assert kochen.authors == "Sander Uijlen, Bas Westerbaan"
    assert kochen.version == 1
    # no <updated>: one version, so its date is the created day
    assert kochen.submitted == kochen.updated == datetime(2014, 12, 29, tzinfo=UTC)
    assert kochen.doi == "10.4204/EPTCS.172.11"
    assert planck.arxiv_id == "hep-th/9504118"  # old-style id
    assert planck.authors == "M. Requardt"


def test_arxiv_format_updated_and_many_categories(shared_data: Path) -> None:
    (paper,) = parse_oai(_read(shared_data, f"{INSPIRE}/arxiv-single.xml")).papers
    assert paper.submitted == datetime(2014, 1, 9, tzinfo=UTC)
    assert paper.updated == datetime(2017, 10, 23, tzinfo=UTC)
    assert paper.categories == ["math.AP", "hep-th", "math-ph", "math.DG", "math.MP", "nlin.SI"]


def test_arxiv_format_suffix_and_keyname_only_authors(shared_data: Path) -> None:
    (paper,) = parse_oai(_read(shared_data, f"{INSPIRE}/sample_arxiv_record4.xml")).papers
    assert paper.authors is not None
    names = paper.authors.split(", ")
    assert names[:4] == ["Keck Array", "BICEP2 Collaborations", ":", "P. Ade"]
    assert "R. W. IV" in names
    assert paper.abstract is not None and "$r<1\\times10^{-4}$" in paper.abstract


def test_list_identifiers_and_info_verbs_are_refused_naming_the_verb(shared_data: Path) -> None:
    """Issue 8 (8): `ingest oai --file Identify.xml` used to report 0 papers and exit 0."""
    data = _read(shared_data, f"{PAPERHIVE}/ListIdentifiers_arXiv_2009-01-01_2009-01-02.xml")
    with pytest.raises(FeedParseError, match="a ListIdentifiers answer"):
        parse_oai(data)
    for verb in ("Identify", "ListSets", "ListMetadataFormats"):
        with pytest.raises(FeedParseError, match=f"a {verb} answer"):
            parse_oai(_read(shared_data, f"{PAPERHIVE}/{verb}.xml"))


def test_error_keeps_code_and_arxivs_message(shared_data: Path) -> None:
    with pytest.raises(OAIError) as caught:
        parse_oai(_read(shared_data, f"{MIKE}/ErrorResponseNoRecordsMatch.xml"))
    assert caught.value.code == "noRecordsMatch"
    assert caught.value.message == "Set argument doesn't match any sets. The setSpec was 'moo'"


def test_the_503_retry_page_is_not_oai(shared_data: Path) -> None:
    data = _read(shared_data, next(iter(NOT_OAI)))
    assert b"Retry after 10 seconds" in data
    with pytest.raises(FeedParseError):
        parse_oai(data)


def _first_record_deleted(data: bytes) -> bytes:
    """A real page whose first record is turned into a deleted one (header only)."""
    text = data.decode()
    first = re.search(r"<record>.*?</record>", text, flags=re.DOTALL)
    assert first is not None
    identifier = re.search(r"<identifier>[^<]+</identifier>", first.group(0))
    assert identifier is not None
    deleted = (
        f'<record><header status="deleted">{identifier.group(0)}'
        "<datestamp>2015-01-05</datestamp></header></record>"
    )
    return text.replace(first.group(0), deleted, 1).encode()


def test_deleted_records_go_to_deleted_ids(shared_data: Path) -> None:
    data = _first_record_deleted(_read(shared_data, f"{MIKE}/ListRecordsResponse.xml"))
    page = parse_oai(data)
    assert page.deleted_ids == ["0704.0471"]
    assert [p.arxiv_id for p in page.papers] == [
        "0704.0716",
        "0704.0874",
        "0704.1109",
        "0704.1114",
        "0704.1586",
    ]


def test_empty_resumption_token_means_last_page(shared_data: Path) -> None:
    data = _read(shared_data, f"{LITPUVN}/ListRecords_arXivRaw_from-2016-10-20.xml")
    last = re.sub(
        rb"<resumptionToken[^>]*>[^<]*</resumptionToken>",
        b'<resumptionToken cursor="1001" completeListSize="1440"/>',
        data,
    )
    page = parse_oai(last)
    assert page.resumption_token is None
    assert (page.complete_list_size, page.cursor) == (1440, 1001)


def test_pretty_printed_empty_token_is_still_the_last_page(shared_data: Path) -> None:
    data = _read(shared_data, f"{MIKE}/ListRecordsResponse.xml").replace(
        b"726959|1001</resumptionToken>", b"\n    </resumptionToken>"
    )
    assert parse_oai(data).resumption_token is None


def test_token_in_todays_format_with_expires_and_no_counts(shared_data: Path) -> None:
    data = _read(shared_data, f"{MIKE}/ListRecordsResponse.xml").replace(
        b'<resumptionToken cursor="0" completeListSize="58011">',
        b"<resumptionToken expires='2026-01-02T03:04:05Z'>",
    )
    page = parse_oai(data)
    assert page.resumption_token == "726959|1001"
    assert (page.complete_list_size, page.cursor) == (None, None)


def test_truncated_or_foreign_xml_is_a_parse_error(shared_data: Path) -> None:
    data = _read(shared_data, f"{MIKE}/ListRecordsResponse.xml")
    with pytest.raises(FeedParseError, match="not XML"):
        parse_oai(data[: len(data) // 2])
    rss = shared_data / "rss/aioarxiv-2024-11-28/rss_empty_test-archive_2024-11-28.xml"
    with pytest.raises(FeedParseError, match="not an OAI-PMH response"):
        parse_oai(rss.read_bytes())


def test_unknown_metadata_format_names_the_record(shared_data: Path) -> None:
    data = _read(shared_data, f"{MIKE}/GetRecordResponse.xml").replace(
        b'xmlns="http://arxiv.org/OAI/arXivRaw/"', b'xmlns="http://example.org/other/"'
    )
    with pytest.raises(FeedParseError, match=r"oai:arXiv.org:1302\.2146"):
        parse_oai(data)


def test_oai_params_first_request_and_resumption() -> None:
    first = oai_params(
        "ListRecords",
        metadata_prefix="arXivRaw",
        set_spec="physics:hep-th",
        from_date=date(2024, 11, 1),
        until=datetime(2024, 11, 2, 13, 0, tzinfo=UTC),
    )
    assert first == {
        "verb": "ListRecords",
        "metadataPrefix": "arXivRaw",
        "set": "physics:hep-th",
        "from": "2024-11-01",
        "until": "2024-11-02",
    }
    assert oai_params("ListRecords", metadata_prefix="arXiv") == {
        "verb": "ListRecords",
        "metadataPrefix": "arXiv",
    }
    resumed = oai_params(
        "ListRecords",
        metadata_prefix="arXivRaw",
        from_date=date(2024, 11, 1),
        resumption_token="726959|1001",
    )
    assert resumed == {"verb": "ListRecords", "resumptionToken": "726959|1001"}


def test_a_record_over_the_input_limits_is_skipped_naming_it_and_the_page_goes_on(
    shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 8 (1): a 5 MB abstract made the ingester crash-loop, naming no paper."""
    data = _read(shared_data, f"{LITPUVN}/ListRecords_arXivRaw_from-2016-10-20.xml").decode()
    first = re.search(r"<abstract>", data)
    assert first is not None
    huge = data[: first.end()] + "x " * 2_500_000 + data[first.end() :]  # 5 MB more
    page = parse_oai(huge.encode())
    assert len(page.papers) == 386 and page.papers[0].arxiv_id != "0803.4354"
    assert "skipped OAI record" in caplog.text and "0803.4354" in caplog.text
