"""A retrain after 1% new papers against a cold train, each as its command runs it.

    .venv/bin/python -m bench.retrain                       # the 5k sample, 3 rounds
    .venv/bin/python -m bench.retrain --rounds 1 --new-share 0.01

The papers: the real sample (``--snapshot``, default arxiv-sample). The "new" ones are the
``--new-share`` of them with the lowest sha256(id) (a uniform draw, not the newest ids); the
rest form the old snapshot, written to the bench's temp dir.

Set-up (untimed), one embedded PostgreSQL for everything: the incumbent is trained and
promoted by ``arxiv-stream train --snapshot old`` (its texts are then in its embedding cache),
and the new papers are stored as ingested papers, which is where a weekly retrain finds them.
Then R rounds, interleaved so that load swings hit each kind alike, each command a fresh
process timed from start to exit (imports included, as a user waits for it):

- ``cold train``: ``arxiv-stream train --snapshot <all papers>`` in an empty data
  directory: every text embedded, the whole selection grid fitted;
- ``warm retrain``: ``arxiv-stream retrain --snapshot old`` (+ the ingested papers): the new
  papers' texts are not in the cache, so the embedder is loaded to embed them;
- ``warm retrain, all cached``: the same retrain again, the new texts now in the cache, as
  the stream worker leaves them when it labels the new papers (models.cache.remember);
- ``retrain --cold, all cached``: the selection grid instead of the warm refit (what a
  retrain cost before warm starts).

Retrains run with ``--margin -1`` (never promote), so every round starts from the same
incumbent. Reported twice: wall seconds of each command, and the same runs' in-process
seconds (a train's ``timing.total_s``, a retrain's ``seconds``: no imports or start-up, what
``retrain --every`` pays each time after its first); for each, every retrain kind over the
cold train per round (median, min, max). Also each run's model on its test papers (the
same papers for every run: the split is by id hash), so a warm challenger's quality can be
held to a cold one's. Written to bench/results/retrain.json.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.common import SAMPLE, machine, shared_data_dir
from core.schemas import Paper
from db import repository
from db.embedded import EmbeddedPostgres
from db.engine import run_sync
from ingest.snapshot import read_snapshot

RESULTS = Path(__file__).parent / "results" / "retrain.json"
CLI = [sys.executable, "-m", "cli.main"]
KINDS = ("cold train", "warm retrain", "warm retrain, all cached", "retrain --cold, all cached")


def say(message: str) -> None:
    print(f"[bench.retrain] {message}", file=sys.stderr, flush=True)


def new_ids(ids: list[str], share: float) -> set[str]:
    """The ``share`` of ``ids`` with the lowest sha256 (at least one)."""
    ranked = sorted(ids, key=lambda i: hashlib.sha256(i.encode()).digest())
    return set(ranked[: max(1, round(len(ranked) * share))])


def write_without(source: Path, target: Path, drop: set[str]) -> int:
    """Copy the snapshot lines of ``source`` whose id is not in ``drop``; lines written."""
    kept = 0
    with gzip.open(source, "rb") as lines, gzip.open(target, "wb", compresslevel=1) as out:
        for line in lines:
            if orjson.loads(line).get("id") not in drop:
                out.write(line)
                kept += 1
    return kept


def run_cli(args: list[str], env: dict[str, str], log: Path) -> float:
    """Seconds ``arxiv-stream <args>`` took in a fresh process; its output goes to ``log``."""
    started = time.perf_counter()
    with log.open("ab") as out:
        done = subprocess.run([*CLI, *args], env=env, stdout=out, stderr=out, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"arxiv-stream {' '.join(args)} failed ({done.returncode}); see {log}")
    return seconds


def environment(data_dir: Path, database_url: str) -> dict[str, str]:
    return os.environ | {
        "ARXIV_STREAM_DATA_DIR": str(data_dir),
        "DATABASE_URL": database_url,
        "ARXIV_STREAM_LOG_LEVEL": "INFO",
    }


def newest_run(database_url: str) -> tuple[float, dict[str, float]]:
    """The newest registered model's in-process seconds (a retrain's ``seconds``, from its
    decision; a train's ``timing.total_s``: neither counts imports or start-up) and its test
    numbers. Every run here splits the same papers by id hash, so their test papers are the
    same and the numbers compare."""

    async def newest(conn: Any) -> repository.ModelRow:
        return (await repository.list_models(conn))[0]

    row = run_sync(database_url, newest)
    if row.decision is not None:
        seconds = float(row.decision["seconds"])
    else:
        seconds = float(row.metrics["timing"]["total_s"])
    test = row.metrics["test"]
    quality = {
        "domain_accuracy": test["domain"]["accuracy"],
        "category_accuracy": test["category"]["accuracy"],
        "precision_at_1": test["category"]["precision_at_1"],
        "top5_micro_recall": test["category"]["top5_micro_recall"],
    }
    return seconds, {k: round(v, 4) for k, v in quality.items()}


def store_ingested(database_url: str, papers: list[Paper]) -> None:
    async def upsert(conn: Any) -> None:
        await repository.upsert_papers(conn, papers, now=datetime.now(UTC))

    run_sync(database_url, upsert)


def summarize(rounds: list[dict[str, float]]) -> dict[str, Any]:
    """Per kind: seconds per round; for each retrain kind, its share of the cold train per
    round with median, min and max. (Used for the wall seconds and the in-process ones.)"""
    out: dict[str, Any] = {kind: [round(r[kind], 2) for r in rounds] for kind in KINDS}
    for kind in KINDS[1:]:
        ratios = [r[kind] / r["cold train"] for r in rounds]
        out[f"{kind} / cold train"] = {
            "per_round": [round(x, 4) for x in ratios],
            "median": round(statistics.median(ratios), 4),
            "min": round(min(ratios), 4),
            "max": round(max(ratios), 4),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--snapshot", type=Path, default=None)
    parser.add_argument("--new-share", type=float, default=0.01)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and its logs")
    args = parser.parse_args(argv)
    snapshot = args.snapshot or shared_data_dir() / SAMPLE
    if not snapshot.is_file():
        raise SystemExit(f"real data not found at {snapshot}; set ARXIV_STREAM_SHARED_DATA")
    work = Path(tempfile.mkdtemp(prefix="arxiv-retrain-"))
    rounds: list[dict[str, float]] = []
    inside: list[dict[str, float]] = []  # the same runs, in-process seconds
    tests: list[dict[str, dict[str, float]]] = []  # each run's model on the test papers
    try:
        papers = {p.arxiv_id: p for p in read_snapshot(snapshot)}
        fresh = new_ids(list(papers), args.new_share)
        old = work / "old.jsonl.gz"
        kept = write_without(snapshot, old, fresh)
        say(f"{len(papers)} papers: {kept} snapshot lines old, {len(fresh)} new")
        log = work / "commands.log"
        with EmbeddedPostgres(work / "pg") as pg:
            warm_env = environment(work / "warm", pg.url)
            say("set-up: the incumbent, trained cold on the old papers")
            run_cli(["train", "--snapshot", str(old)], warm_env, log)
            store_ingested(pg.url, [papers[i] for i in sorted(fresh)])
            cache = work / "warm" / "embedding-cache"
            pristine = work / "cache-old"
            shutil.copytree(cache, pristine)
            retrain = ["retrain", "--snapshot", str(old), "--margin", "-1"]
            for k in range(1, args.rounds + 1):
                say(f"round {k}/{args.rounds}: cold train, warm retrain, warm retrain cached")
                cold_env = environment(work / f"cold-{k}", pg.url)
                commands = {
                    "cold train": (["train", "--snapshot", str(snapshot)], cold_env),
                    "warm retrain": (retrain, warm_env),
                    "warm retrain, all cached": (retrain, warm_env),
                    "retrain --cold, all cached": ([*retrain, "--cold"], warm_env),
                }
                row, row_inside, row_test = {}, {}, {}
                for kind, (command, env) in commands.items():
                    if kind == "warm retrain":
                        shutil.rmtree(cache)
                        shutil.copytree(pristine, cache)  # the new texts not embedded yet
                    row[kind] = run_cli(command, env, log)
                    row_inside[kind], row_test[kind] = newest_run(pg.url)
                rounds.append(row)
                inside.append(row_inside)
                tests.append(row_test)
                say("  " + ", ".join(f"{kind} {s:.1f}s" for kind, s in row.items()))
                say("  in-process: " + ", ".join(f"{s:.1f}s" for s in row_inside.values()))
                shutil.rmtree(work / f"cold-{k}")
    finally:
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report = {
        "snapshot": str(snapshot.name),
        "papers": len(papers),
        "new_papers": len(fresh),
        "rounds": args.rounds,
        "seconds": summarize(rounds),
        "seconds_in_process": summarize(inside),
        "test_numbers": tests,
        "machine": machine("cpu"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for key, what in (("seconds", "command"), ("seconds_in_process", "in-process")):
        for kind in KINDS[1:]:
            r = report[key][f"{kind} / cold train"]
            print(f"{what}: {kind} / cold train: median {r['median']} ({r['min']}-{r['max']})")
    print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
