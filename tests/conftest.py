"""Session-wide fixtures. Real data is read from ../shared/data (or $ARXIV_STREAM_SHARED_DATA);
it is never copied into the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures_pg", "tests.fixtures_kafka"]

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    env = os.environ.get("ARXIV_STREAM_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.fail(f"real arXiv data not found at {path}; set ARXIV_STREAM_SHARED_DATA")
    return path


# --- artifacts a test leaves for people (screenshots): listed at the end of the run -------

_ARTIFACTS: list[str] = []


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where tests write files worth a look (``$ARXIV_STREAM_ARTIFACTS`` if set)."""
    env = os.environ.get("ARXIV_STREAM_ARTIFACTS")
    path = Path(env) if env else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def keep_artifact(path: Path, what: str) -> None:
    _ARTIFACTS.append(f"{what}: {path}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _ARTIFACTS:
        terminalreporter.section("artifacts")
        for line in _ARTIFACTS:
            terminalreporter.write_line(line)
