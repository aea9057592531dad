"""The page in a real headless browser (Debian's chromium and chromedriver; `make test`
installs them): paste a real abstract, see the top-5 bars with the winner marked, the latest
papers table, a paper's page, and no error in the browser console. The screenshot is listed
under "artifacts" at the end of the run."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from api.app import create_app
from core.settings import Settings
from db import migrate, repository
from db.engine import create_async_engine_for
from db.repository import LabelRow
from ingest.snapshot import read_snapshot
from lifecycle.registry import Registry
from lifecycle.train import TrainOptions, train_and_register
from tests.conftest import keep_artifact

pytestmark = pytest.mark.integration

SAMPLE = "arxiv-sample/arxiv-metadata-sample.jsonl.gz"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(
    shared_data: Path, pg_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The API on a real port: a fresh database, a model trained from the sample, and a few
    labelled real papers; yields its base URL."""
    data = tmp_path_factory.mktemp("page-data")
    url = pg_database()
    migrate.upgrade(url)
    settings = Settings(data_dir=data, device="cpu", api_port=_free_port())
    small = data / "small.jsonl.gz"
    with gzip.open(shared_data / SAMPLE, "rt") as fin, gzip.open(small, "wt") as fout:
        fout.writelines(line for i, line in enumerate(fin) if i % 15 == 0)
    model = train_and_register(
        settings, Registry(settings, url), small, TrainOptions(head="logreg"), now=T0
    ).result.version
    shown = list(read_snapshot(shared_data / SAMPLE, max_samples=3))

    async def store() -> None:
        engine = create_async_engine_for(url)
        try:
            async with engine.begin() as conn:
                await repository.upsert_papers(conn, shown, now=T0)
                await repository.upsert_labels(
                    conn,
                    [
                        LabelRow(
                            p.arxiv_id,
                            p.version,
                            model,
                            "Physics",
                            0.8,
                            p.categories[0],
                            0.6,
                            {"domain": [], "category": []},
                            True,
                            T0,
                        )
                        for p in shown
                    ],
                )
        finally:
            await engine.dispose()

    asyncio.run(store())
    config = uvicorn.Config(
        create_app(settings, url), host="127.0.0.1", port=settings.api_port, log_level="warning"
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{settings.api_port}"
    finally:
        uv.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail(
            "Debian's chromium and chromedriver are needed (`make browser`, or "
            "apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1400"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    try:
        yield chrome
    finally:
        chrome.quit()


def test_paste_an_abstract_and_see_the_bars(
    server: str, browser: webdriver.Chrome, shared_data: Path, artifacts_dir: Path
) -> None:
    paper = list(read_snapshot(shared_data / SAMPLE, max_samples=40))[-1]
    browser.get(server + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#latest-rows tr")) == 3)
    browser.find_element(By.ID, "title").send_keys(paper.title)
    abstract = browser.find_element(By.ID, "abstract")
    abstract.send_keys(paper.abstract or "")
    abstract.send_keys(Keys.CONTROL, Keys.ENTER)  # the shortcut, not the button
    wait.until(ec.visibility_of_element_located((By.ID, "result")))
    bars = browser.find_elements(By.CSS_SELECTOR, "#category-bars li")
    assert len(bars) == 5
    winner = browser.find_element(By.CSS_SELECTOR, "#category-bars li.winner .label").text
    assert winner.startswith("★ ")
    assert winner[2:] == browser.find_element(By.ID, "verdict-category").text
    # drawn widths in pixels, as the user sees them: longest first, the winner's not empty
    widths = [b.find_element(By.CSS_SELECTOR, ".fill").size["width"] for b in bars]
    track = bars[0].find_element(By.CSS_SELECTOR, ".track").size["width"]
    assert widths == sorted(widths, reverse=True) and 0 < widths[0] <= track
    shot = artifacts_dir / "page-classify.png"
    browser.save_screenshot(str(shot))
    keep_artifact(shot, "screenshot of the page after classifying a real abstract")

    first = browser.find_element(By.CSS_SELECTOR, "#latest-rows tr a")
    first.click()
    wait.until(lambda b: b.find_element(By.ID, "paper-title").text != "")
    assert "/papers/" in browser.current_url
    assert browser.find_elements(By.CSS_SELECTOR, "#paper-labels tr")

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
