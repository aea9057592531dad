"""Issue 8 (8): every user error gets one line on stderr and exit status 2, never a
traceback or a silent success. The command line is called in-process (cli.main.main)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cli.main import main
from db import migrate

pytestmark = pytest.mark.integration


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ARXIV_STREAM_DATA_DIR", str(tmp_path / "data"))
    return monkeypatch


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    lines = [line for line in err if line.startswith("arxiv-stream: ")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in "\n".join(err), err
    return lines[0]


def _usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    return capsys.readouterr().err


def test_database_errors(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], pg_database: Callable[[], str]
) -> None:
    url = pg_database()
    migrate.downgrade(url, "base")
    env.setenv("DATABASE_URL", url)
    assert "unknown migration revision 'nosuch'" in _one_line_error(
        capsys, ["db", "upgrade", "nosuch"]
    )
    # the worker: an unmigrated database, then no model, before any word about a broker
    assert "db upgrade" in _one_line_error(capsys, ["worker"])
    migrate.upgrade(url)
    assert "no promoted model" in _one_line_error(capsys, ["worker"])
    env.setenv("DATABASE_URL", "postgresql://user:secret@localhost:abc/db")
    line = _one_line_error(capsys, ["db", "current"])
    assert "port is not a number" in line and "secret" not in line


def test_broker_errors(
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    kafka_bootstrap: str,
    pg_database: Callable[[], str],
    shared_data: Path,
) -> None:
    env.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    assert "cannot reach the Kafka broker" in _one_line_error(
        capsys, ["tail", "--limit", "1", "--idle-exit", "2"]
    )
    env.setenv("DATABASE_URL", pg_database())
    feed = shared_data / "rss" / "aioarxiv-2024-11-28" / "rss_all-archives_2024-11-28.xml"
    assert "cannot reach the Kafka broker at 127.0.0.1:1" in _one_line_error(
        capsys, ["ingest", "rss", "--file", str(feed)]
    )
    env.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    assert "no topic 'no-such-topic'" in _one_line_error(
        capsys, ["tail", "--topic", "no-such-topic", "--idle-exit", "2"]
    )


def test_input_errors(
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    pg_database: Callable[[], str],
    tmp_path: Path,
    shared_data: Path,
) -> None:
    env.setenv("DATABASE_URL", pg_database())
    assert "no such snapshot file" in _one_line_error(
        capsys, ["train", "--snapshot", str(tmp_path / "missing.jsonl")]
    )
    html = tmp_path / "page.html"
    html.write_text("<html><body>not a snapshot</body></html>\n")
    env.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    assert "predict needs a non-empty" in _one_line_error(
        capsys, ["predict", "--title", " ", "--abstract", ""]
    )
    assert "--top-k: must be at least 1" in _usage_error(
        capsys, ["predict", "--title", "x", "--top-k", "-3"]
    )
    assert "--workers: must be at least 1" in _usage_error(capsys, ["up", "--workers", "-2"])
    assert "argument --every" in _usage_error(
        capsys, ["retrain", "--snapshot", "x", "--every", "soon"]
    )
    assert "--base-model and --epochs go with --head finetune" in _one_line_error(
        capsys, ["train", "--snapshot", str(html), "--epochs", "2"]
    )
    missing = str(tmp_path / "missing.jsonl")
    for argv in (["evaluate", "--snapshot", missing], ["retrain", "--snapshot", missing]):
        assert "no such snapshot file" in _one_line_error(capsys, argv), argv
    assert "missing.xml" in _one_line_error(
        capsys, ["ingest", "rss", "--file", str(tmp_path / "missing.xml")]
    )
    assert "no such file" in _one_line_error(capsys, ["up", "--replay", missing])
    assert "neither an RSS feed nor an OAI-PMH response" in _one_line_error(
        capsys, ["up", "--replay", str(html)]
    )
    # files that are not what they are given as: refused, nothing stored
    assert "not a Kaggle-format snapshot" in _one_line_error(
        capsys, ["train", "--snapshot", str(html)]
    )
    for verb in ("Identify", "ListSets"):
        answer = shared_data / "oai-pmh" / "paperhive-oai-pmh-2018" / f"{verb}.xml"
        assert verb in _one_line_error(capsys, ["ingest", "oai", "--file", str(answer)]), verb
    # text that is not UTF-8 (a terminal in another encoding: Python's surrogate escapes)
    assert "not valid UTF-8" in _one_line_error(capsys, ["predict", "--title", "caf\udce9"])
