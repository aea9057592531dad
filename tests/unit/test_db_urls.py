"""URL handling in db/engine.py: pure string work, no server."""

from __future__ import annotations

import pytest
from sqlalchemy import make_url

from core.errors import ConfigError
from db.engine import async_url, describe_target, masked_url, psql_url, sqlalchemy_url

SOCKET_URL = "postgresql://postgres:@/arxiv_stream?host=/tmp/pg/data"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://user:pw@db.example:5433/arxiv",
        "postgres://user:pw@db.example:5433/arxiv",
        "postgresql+psycopg://user:pw@db.example:5433/arxiv",
        "postgresql+asyncpg://user:pw@db.example:5433/arxiv",
        "postgresql+psycopg2://user:pw@db.example:5433/arxiv",
    ],
)
def test_every_postgres_spelling_becomes_psycopg(url: str) -> None:
    assert async_url(url) == "postgresql+psycopg://user:pw@db.example:5433/arxiv"
    assert psql_url(url) == "postgresql://user:pw@db.example:5433/arxiv"


def test_socket_url_keeps_the_socket_dir_readable_for_psql() -> None:
    assert psql_url(SOCKET_URL) == "postgresql://postgres@/arxiv_stream?host=/tmp/pg/data"
    parsed = sqlalchemy_url(SOCKET_URL)
    assert parsed.query["host"] == "/tmp/pg/data"
    assert parsed.database == "arxiv_stream"


def test_special_characters_in_the_password_survive_the_round_trip() -> None:
    url = "postgresql://user:p%40ss%2Fw%3Ard@host/db"
    assert make_url(async_url(url)).password == "p@ss/w:rd"
    assert make_url(psql_url(url)).password == "p@ss/w:rd"


def test_asyncpg_ssl_parameter_becomes_libpq_sslmode() -> None:
    assert psql_url("postgresql+asyncpg://u@h/db?ssl=require") == (
        "postgresql://u@h/db?sslmode=require"
    )


def test_masked_url_hides_the_password() -> None:
    masked = masked_url("postgresql://user:hunter2@host:5432/db")
    assert "hunter2" not in masked
    assert masked == "postgresql://user:***@host:5432/db"


def test_masked_url_of_garbage_does_not_echo_it() -> None:
    assert "hunter2" not in masked_url("not a url with hunter2")


def test_describe_target_names_host_and_database_only() -> None:
    text = describe_target("postgresql://user:hunter2@db.example:5433/arxiv")
    assert text == "database 'arxiv' on db.example:5433"
    assert describe_target(SOCKET_URL) == "database 'arxiv_stream' on /tmp/pg/data"


@pytest.mark.parametrize("url", ["mysql://u:hunter2@h/db", "sqlite:///x.db", "nonsense"])
def test_non_postgres_urls_are_config_errors_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        sqlalchemy_url(url)
    assert "hunter2" not in str(info.value)
