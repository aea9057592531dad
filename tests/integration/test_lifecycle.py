"""The model lifecycle on real parts: train (twice: the second embeds nothing), a running
worker, ``retrain`` promoting a better challenger, the worker labelling the next papers with
the new version without a restart, and ``relabel`` through the stream."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from ingest.rss import parse_rss
from tests.integration.stack import (
    cli,
    query,
    start_cli,
    stop,
    subset_snapshot,
    wait_for,
    worker_env,
)

pytestmark = pytest.mark.integration

FEED = "rss/aioarxiv-2024-11-28/rss_all-archives_2024-11-28.xml"
SAMPLE = "arxiv-sample/arxiv-metadata-sample.jsonl.gz"


def _feed_slice(feed: Path, dst: Path, start: int, stop_: int) -> set[str]:
    """A real feed cut down to items [start, stop_) (generated from real data)."""
    text = feed.read_text()
    head, _, rest = text.partition("<item>")
    items = ("<item>" + rest).split("</item>")[:-1]
    chosen = items[start:stop_]
    dst.write_text(head + "</item>".join(chosen) + "</item>\n  </channel>\n</rss>\n")
    return {p.arxiv_id for p in parse_rss(dst.read_bytes())}


def _version(stdout: str) -> str:
    found = re.search(r"model (m\d{8}-\d{6}-[0-9a-f]{4}) ", stdout)
    assert found, stdout
    return found.group(1)


def test_train_retrain_hot_swap_and_relabel(
    shared_data: Path,
    kafka_bootstrap: str,
    pg_database: Callable[[], str],
    tmp_path: Path,
) -> None:
    db = pg_database()
    env = worker_env(tmp_path, db, kafka_bootstrap)
    sample = shared_data / SAMPLE
    small = subset_snapshot(sample, tmp_path / "small.jsonl.gz", every=15)  # ~350 papers
    large = subset_snapshot(sample, tmp_path / "large.jsonl.gz", every=5)  # ~1,050, includes small

    first = _version(cli(env, "train", "--snapshot", str(small), "--head", "logreg").stdout)
    again = _version(cli(env, "train", "--snapshot", str(small), "--head", "logreg").stdout)
    models = tmp_path / "data" / "models"
    assert (
        json.loads((models / first / "metrics.json").read_text())["timing"]["texts_embedded"] > 300
    )
    # the second train over the same data embeds nothing again (content-addressed cache)
    assert (
        json.loads((models / again / "metrics.json").read_text())["timing"]["texts_embedded"] == 0
    )
    listing = cli(env, "models", "list").stdout
    assert f"* {first}" in listing and f"  {again}" in listing  # only the first is promoted

    log = tmp_path / "worker.log"
    worker = start_cli(env, log, "worker")
    try:
        feed = shared_data / FEED
        batch1 = _feed_slice(feed, tmp_path / "feed1.xml", 0, 30)
        cli(env, "ingest", "rss", "--file", str(tmp_path / "feed1.xml"))
        wait_for(
            lambda: (
                len(query(db, "SELECT 1 FROM labels WHERE model_version=%s", first)) == len(batch1)
            ),
            timeout=300,
            what="first batch labelled",
            log=log,
        )

        out = cli(
            env,
            "retrain",
            "--snapshot",
            str(large),
            "--head",
            "logreg",
            "--no-ingested",
            "--margin",
            "0.02",
        ).stdout
        assert "PROMOTED" in out, out
        challenger = re.search(r"challenger (m\S+) vs incumbent (m\S+)", out)
        assert challenger and challenger.group(2) == first
        second = challenger.group(1)
        decision = query(db, "SELECT promoted, decision FROM models WHERE version=%s", second)
        promoted, stored = decision[0]
        assert promoted is True
        assert stored["incumbent"] == first and stored["promote"] is True  # type: ignore[index]
        ours = stored["challenger_metrics"]["domain"]["accuracy"]  # type: ignore[index]
        theirs = stored["incumbent_metrics"]["domain"]["accuracy"]  # type: ignore[index]
        assert ours >= theirs - 0.02

        # the running worker picks the promotion up between batches: no restart
        batch2 = _feed_slice(feed, tmp_path / "feed2.xml", 30, 60)
        cli(env, "ingest", "rss", "--file", str(tmp_path / "feed2.xml"))
        wait_for(
            lambda: (
                {
                    r[0]
                    for r in query(db, "SELECT arxiv_id FROM labels WHERE model_version=%s", second)
                }
                >= batch2
            ),
            timeout=300,
            what="second batch labelled by the new model",
            log=log,
        )
        assert query(
            db,
            "SELECT count(*) FROM labels WHERE model_version=%s AND arxiv_id = ANY(%s)",
            first,
            list(batch2),
        ) == [(0,)]
        assert worker.poll() is None  # same process throughout

        # the read side of the registry, as users call it
        predicted = json.loads(
            cli(env, "predict", "--title", "Deep residual learning for image recognition",
                "--abstract", "We train very deep convolutional networks on ImageNet.",
                "--top-k", "3", "--json").stdout
        )  # fmt: skip
        assert predicted["model_version"] == second and len(predicted["category_top_k"]) == 3
        assert predicted["domain"]["label"] == "Computer Science"
        metrics = json.loads(cli(env, "evaluate", "--snapshot", str(small), "--json").stdout)
        assert metrics["model_version"] == second
        for space in ("domain", "group", "archive", "category"):
            assert {"n", "accuracy", "macro_f1", "weighted_f1", "top5_accuracy"} <= set(
                metrics[space]
            )
        assert {"precision_at_1", "top5_micro_recall"} <= set(metrics["category"])
        assert {"micro_f1", "macro_f1"} <= set(metrics["categories"])
        shown = json.loads(cli(env, "models", "show", second).stdout)
        assert shown["promoted"] is True and shown["decision"]["promote"] is True

        # relabel: the first batch, through the stream, now under the promoted model
        relabel = json.loads(cli(env, "relabel").stdout)
        assert relabel == {"queued": len(batch1 | batch2), "model_version": second}
        wait_for(
            lambda: (
                query(db, "SELECT count(*) FROM latest_labels WHERE model_version=%s", second)
                == [(len(batch1 | batch2),)]
            ),
            timeout=300,
            what="relabelled papers",
            log=log,
        )
        counts = query(
            db,
            "SELECT arxiv_id, version, model_version, count(*) FROM labels "
            "GROUP BY 1, 2, 3 HAVING count(*) > 1",
        )
        assert counts == []
    finally:
        stop(worker)
