"""arXiv ids, taxonomy tables (checked against the real taxonomy), settings, wire schemas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.arxiv_ids import canonical_id, parse_arxiv_id
from core.errors import MessageError
from core.schemas import Paper, decode_paper, encode
from core.settings import load_settings
from core.taxonomy import (
    ARCHIVE_GROUP,
    ARCHIVES_SUBSUMED,
    CATEGORY_ALIASES,
    GROUP_NAMES,
    RSS_ARCHIVES,
    archive_of,
    canonical_categories,
    canonical_category,
    domain_of,
    group_of,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2411.17700", ("2411.17700", None)),
        ("arXiv:2411.17700v2", ("2411.17700", 2)),
        ("oai:arXiv.org:hep-th/9901001", ("hep-th/9901001", None)),
        ("https://arxiv.org/abs/math.GT/0309136v1", ("math.GT/0309136", 1)),
        ("0704.0001v12", ("0704.0001", 12)),
        ("http://arxiv.org/abs/1412.8544", ("1412.8544", None)),
    ],
)
def test_parse_arxiv_id(raw: str, expected: tuple[str, int | None]) -> None:
    assert tuple(parse_arxiv_id(raw)) == expected


@pytest.mark.parametrize("raw", ["", "abc", "2411.177", "hep-th/99", "2411.17700v"])
def test_parse_arxiv_id_rejects(raw: str) -> None:
    with pytest.raises(MessageError):
        canonical_id(raw)


def test_taxonomy_tables_match_arxiv(shared_data: Path) -> None:
    facts = json.loads((shared_data / "taxonomy" / "arxiv-taxonomy.json").read_text())
    real_archives = {
        k: v["in_group"] for k, v in facts["archives"].items() if v["in_group"] in GROUP_NAMES
    }
    assert real_archives == ARCHIVE_GROUP
    assert facts["category_aliases"] == CATEGORY_ALIASES
    assert facts["archives_subsumed"] == ARCHIVES_SUBSUMED
    assert {k: v["full_name"] for k, v in facts["groups"].items() if k in GROUP_NAMES} == (
        GROUP_NAMES
    )
    assert {a for a, v in facts["archives"].items() if v["is_active"]} - {"test"} == set(
        RSS_ARCHIVES
    )
    # every real category maps to a known group; aliases resolve to real categories
    for cat, info in facts["categories"].items():
        if info["in_archive"] in ARCHIVE_GROUP:
            assert group_of(cat) in GROUP_NAMES, cat
            assert canonical_category(cat) in facts["categories"], cat


@pytest.mark.parametrize(
    ("category", "domain", "group", "archive"),
    [
        ("cs.LG", "Computer Science", "grp_cs", "cs"),
        ("math.IT", "Computer Science", "grp_cs", "cs"),  # alias of cs.IT
        ("math-ph", "Physics", "grp_physics", "math-ph"),
        ("math.MP", "Physics", "grp_physics", "math-ph"),
        ("physics.optics", "Physics", "grp_physics", "physics"),
        ("alg-geom", "Mathematics", "grp_math", "math"),  # subsumed by math.AG
        ("stat.ML", "Mathematics", "grp_stat", "stat"),
        ("q-bio.NC", "Biology", "grp_q-bio", "q-bio"),
        ("q-fin.EC", "Economics", "grp_econ", "econ"),  # alias of econ.GN
        ("q-fin.ST", "Economics", "grp_q-fin", "q-fin"),
        ("eess.SP", "Engineering", "grp_eess", "eess"),
        ("cs.SY", "Engineering", "grp_eess", "eess"),
        ("test.dis-nn", "Other", "grp_other", "test"),
    ],
)
def test_label_spaces(category: str, domain: str, group: str, archive: str) -> None:
    assert (domain_of(category), group_of(category), archive_of(category)) == (
        domain,
        group,
        archive,
    )


def test_canonical_categories_keeps_primary_first() -> None:
    assert canonical_categories(["math.IT", "cs.IT", "chao-dyn", " "]) == ["cs.IT", "nlin.CD"]


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ARXIV_STREAM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ARXIV_STREAM_CATEGORIES", "cs, math+hep-th")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:hunter2@db/x")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("ARXIV_STREAM_KAFKA_SASL_PASSWORD", "s3cret")
    settings = load_settings()
    assert settings.categories == ["cs", "math", "hep-th"]
    assert settings.models_dir == tmp_path / "models"
    assert settings.database_url_value() == "postgresql://u:hunter2@db/x"
    assert settings.kafka_bootstrap_servers == "k1:9092,k2:9092"
    shown = repr(settings) + str(settings.model_dump())
    assert "hunter2" not in shown and "s3cret" not in shown


def test_settings_reject_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARXIV_STREAM_DEVICE", "tpu")
    with pytest.raises(ValueError, match="device"):
        load_settings()


def test_a_refused_setting_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import ValidationError

    from core.settings import describe_settings_error

    monkeypatch.setenv("ARXIV_STREAM_CONCURRENT_BATCHES", "0")
    monkeypatch.setenv("ARXIV_STREAM_BATCH_SIZE", "many")
    with pytest.raises(ValidationError) as refused:
        load_settings()
    line = describe_settings_error(refused.value)
    assert "\n" not in line
    assert "ARXIV_STREAM_CONCURRENT_BATCHES: Input should be greater than or equal to 1" in line
    assert "ARXIV_STREAM_BATCH_SIZE:" in line and "(got 'many')" in line
    monkeypatch.delenv("ARXIV_STREAM_CONCURRENT_BATCHES")
    monkeypatch.delenv("ARXIV_STREAM_BATCH_SIZE")
    with pytest.raises(ValidationError) as secret:  # a refused secret is never echoed
        load_settings(database_url=["postgresql://u:hunter2@db/x"])
    line = describe_settings_error(secret.value)
    assert "DATABASE_URL" in line and "hunter2" not in line
    assert describe_settings_error(OSError("disk full\nmore")) == "disk full"


def test_paper_round_trip_and_poison() -> None:
    paper = Paper(
        arxiv_id="oai:arXiv.org:hep-th/9901001v3",
        version=3,
        title="T",
        abstract="A",
        categories=["hep-th", "gr-qc"],
        source="oai",
    )
    assert paper.arxiv_id == "hep-th/9901001"
    assert decode_paper(encode(paper)) == paper
    assert paper.text == "T. A"
    for poison in (b"not json", b"[1,2]", b'{"schema":"other/9"}', b'{"arxiv_id":"x"}', b"\xff"):
        with pytest.raises(MessageError):
            decode_paper(poison)
