"""Throughput and latency of the pipeline against the worker's own work without Kafka, in
one run, interleaved so that load swings on a shared machine cancel.

    python -m bench.throughput [--papers N] [--rounds R] [--singles K] [--model-dir DIR]
                               [--out bench/results/throughput.json]

1. the model alone (bench/bare.py ``BareInference``) over the N distinct papers of the real
   all-archives RSS feed of 28 Nov 2024: papers/s, and the embedder's share;
2. the baseline (``BareWorker``): per batch of the worker's size, decode + classify + one
   database transaction + the published mark, serially, into its own PostgreSQL;
3. R rounds, each: the full pipeline (bench/pipeline.py: fresh embedded PostgreSQL + Tansu
   + one worker subprocess, timed from the ingester until all N labels are in PostgreSQL
   and on the classified topic, then K single papers one at a time for latency), then the
   baseline again. Round i's ratio is its pipeline rate over the mean of the baselines on
   either side of it; the report gives the median and the spread over the rounds. With
   ``--one-at-a-time`` (default) each round also runs the pipeline once more with the
   worker classifying one batch at a time (``ARXIV_STREAM_CONCURRENT_BATCHES=1``), just
   before or after the default one (alternating): what overlapping batches gains;
4. a JSON report (machine, model, every measurement, the summary) and a table on stdout.

Without ``--model-dir`` a logreg model is trained first from the real Kaggle-format sample
(``--max-train`` papers), in the run's temporary directory. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from bench.bare import BareInference, BareWorker
from bench.common import (
    FEED,
    SAMPLE,
    distinct_papers,
    format_table,
    machine,
    ratio,
    shared_data_dir,
)
from bench.pipeline import BenchModel, register_model, run_pipeline
from core.schemas import Paper
from core.settings import load_settings
from db import migrate
from db.embedded import EmbeddedPostgres
from ingest.rss import parse_rss
from ingest.snapshot import read_snapshot
from models.bundle import read_config, read_metrics

DEFAULT_OUT = Path("bench/results/throughput.json")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    parser.add_argument("--papers", type=int, default=None, help="N (default: the whole feed)")
    parser.add_argument("--max-train", type=int, default=1500, help="papers to train on")
    parser.add_argument("--model-dir", type=Path, default=None, help="use this bundle instead")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON report")
    parser.add_argument("--batch-size", type=int, default=64, help="the worker's batch size")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] | mps")
    parser.add_argument(
        "--variant",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="embedder weights of the model trained here (ignored with --model-dir)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="embedding cache for training (default: the data dir's embedding-cache)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="pipeline rounds")
    parser.add_argument(
        "--workers", type=int, default=2, help="also run each round with N workers (1: not)"
    )
    parser.add_argument(
        "--one-at-a-time",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run each round with the worker classifying one batch at a time "
        "(ARXIV_STREAM_CONCURRENT_BATCHES=1) against its default",
    )
    parser.add_argument(
        "--singles", type=int, default=30, help="single papers per round, for latency"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="pipeline time limit, s")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    return parser.parse_args(argv)


_STARTED = time.monotonic()


def say(message: str) -> None:
    """Progress goes to stderr: stdout carries only the result table."""
    print(f"[bench {time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def load_papers(
    shared: Path, n: int | None, singles: int
) -> tuple[list[Paper], Paper, list[Paper]]:
    """The first ``n`` distinct feed papers, a warm-up paper that is not among them, and
    ``singles`` more such papers for the latency phase (all real)."""
    feed = distinct_papers(parse_rss((shared / FEED).read_bytes()))
    papers = feed if n is None else feed[:n]
    if n is not None and n > len(feed):
        say(f"the feed has {len(feed)} distinct papers; using all of them")
    ids = {p.arxiv_id for p in feed}
    others = (p for p in read_snapshot(shared / SAMPLE) if p.arxiv_id not in ids)
    warmup = next(others)
    return papers, warmup, list(islice(others, singles))


def prepare_model(args: argparse.Namespace, shared: Path, work: Path) -> BenchModel:
    """``--model-dir``, or a logreg model trained now on ``--max-train`` real papers."""
    if args.model_dir is not None:
        model_dir = args.model_dir.resolve()
    else:
        from training.train import train_model  # slow import; not needed with --model-dir

        cache_dir = args.cache_dir or load_settings().embedding_cache_dir
        say(f"training a logreg model on {args.max_train} papers (cache {cache_dir})")
        result = train_model(
            shared / SAMPLE,
            models_dir=work / "models",
            max_samples=args.max_train,
            head="logreg",
            variant=args.variant,
            cache_dir=cache_dir,
            device=args.device,
            batch_size=args.batch_size,
            progress=False,
        )
        model_dir = result.path
    config = read_config(model_dir)
    # The worker loads <models_dir>/<promoted version>: the directory name must be it.
    if model_dir.name != config.version:
        raise SystemExit(f"{model_dir}: directory name differs from version {config.version}")
    return BenchModel(model_dir.parent, config.version, config.model_id, read_metrics(model_dir))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-quantile (0..1) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def spread(ratios: Sequence[float | None]) -> dict[str, float | None]:
    """Median (3 places), min and max of the known per-round ratios (None: none known)."""
    known = [r for r in ratios if r is not None]
    return {
        "median": round(statistics.median(known), 3) if known else None,
        "min": min(known) if known else None,
        "max": max(known) if known else None,
    }


def paired_ratios(
    numerators: Sequence[dict[str, Any]], denominators: Sequence[dict[str, Any]]
) -> list[float | None]:
    """Round by round, one pipeline's rate over the other's (each pair ran back to back)."""
    return [
        ratio(n["end_to_end_papers_per_s"], d["end_to_end_papers_per_s"])
        for n, d in zip(numerators, denominators, strict=True)
    ]


def summarize_rounds(
    bare_rates: Sequence[float], pipelines: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Round i's ratio is its pipeline rate over the mean of the baselines measured just
    before and just after it (``bare_rates`` has one more entry than ``pipelines``), so a
    load swing that spans a round moves both sides. Median and spread over the rounds;
    single-paper latencies pooled over the rounds."""
    if len(bare_rates) != len(pipelines) + 1:
        raise ValueError("one baseline before every pipeline round and one after the last")
    ratios = [
        ratio(p["end_to_end_papers_per_s"], (bare_rates[i] + bare_rates[i + 1]) / 2)
        for i, p in enumerate(pipelines)
    ]
    latencies = [x for p in pipelines for x in p.get("single_paper_latencies_s", [])]

    def rounded(value: float | None, places: int = 3) -> float | None:
        return None if value is None else round(value, places)

    return {
        "pipeline_over_bare_worker": ratios,
        **spread(ratios),
        "latency_s": {
            "singles": len(latencies),
            "p50": rounded(percentile(latencies, 0.50)),
            "p95": rounded(percentile(latencies, 0.95)),
            "p99": rounded(percentile(latencies, 0.99)),
            "max": rounded(max(latencies)) if latencies else None,
        },
    }


def cpu_per_paper(
    bare_cpu: Sequence[dict[str, float]], pipelines: Sequence[dict[str, Any]], papers: int
) -> dict[str, Any]:
    """Mean CPU-milliseconds per paper by part, for the bare worker (this process and its
    PostgreSQL) and the pipeline (workers, Tansu, PostgreSQL, the driver: ingester and topic
    reader), and the pipeline's total over the bare worker's: where the extra CPU goes."""

    def mean_ms(rows: Sequence[dict[str, float]]) -> dict[str, float]:
        parts = sorted({name for row in rows for name in row})
        return {
            name: round(1000 * statistics.mean(row.get(name, 0.0) for row in rows) / papers, 2)
            for name in parts
        }

    pipeline_rows = [p["cpu_s"] for p in pipelines if p.get("cpu_s")]
    if not bare_cpu or not pipeline_rows or papers < 1:
        return {}
    bare, pipeline = mean_ms(bare_cpu), mean_ms(pipeline_rows)
    return {
        "bare_worker_ms": bare,
        "pipeline_ms": pipeline,
        "pipeline_over_bare_cpu": ratio(sum(pipeline.values()), sum(bare.values())),
    }


def build_report(
    split: dict[str, Any],
    bare_rates: Sequence[float],
    pipelines: Sequence[dict[str, Any]],
    model: BenchModel,
    machine_info: dict[str, Any],
    scaled: Sequence[dict[str, Any]] = (),
    bare_cpu: Sequence[dict[str, float]] = (),
    one_at_a_time: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The JSON document: inputs, every round's measurements, and their summary. ``scaled``:
    the same rounds with N workers on the same cores, held to that round's single worker."""
    test = model.metrics.get("test", {})
    return {
        "benchmark": "throughput",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info,
        "model": {
            "version": model.version,
            "embedder": model.embedder_id,
            "embedder_variant": split["embedder_variant"],
            "test_domain_accuracy": test.get("domain", {}).get("accuracy"),
            "test_category_accuracy": test.get("category", {}).get("accuracy"),
        },
        "feed": FEED,
        "papers": split["papers"],
        "batch_size": split["batch_size"],
        "model_alone": split,
        "bare_worker_papers_per_s": list(bare_rates),
        "pipeline_rounds": list(pipelines),
        "summary": summarize_rounds(bare_rates, pipelines)
        | {
            "embedding_share_of_model": ratio(
                split["embed_s"], split["embed_s"] + split["heads_s"]
            ),
        },
        "cpu_per_paper": cpu_per_paper(bare_cpu, pipelines, split["papers"]),
        "bare_worker_cpu_s": list(bare_cpu),
        "one_at_a_time_rounds": list(one_at_a_time),
        "one_at_a_time_summary": summarize_overlap(pipelines, one_at_a_time)
        if one_at_a_time
        else None,
        "workers_rounds": list(scaled),
        "workers_summary": summarize_workers(pipelines, scaled) if scaled else None,
    }


def summarize_workers(
    single: Sequence[dict[str, Any]], scaled: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """N workers against one, round by round (each pair ran back to back)."""
    ratios = paired_ratios(scaled, single)
    return {
        "workers": scaled[0]["workers"],
        "n_workers_over_one": ratios,
        **spread(ratios),
        "classified_messages_twice": [n.get("classified_messages_twice") for n in scaled],
    }


def summarize_overlap(
    default: Sequence[dict[str, Any]], one_at_a_time: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The worker as it runs (its model's ``concurrent_batches``) against the same worker
    classifying one batch at a time, round by round (each pair ran back to back)."""
    ratios = paired_ratios(default, one_at_a_time)
    return {"default_over_one_at_a_time": ratios, **spread(ratios)}


def table(report: dict[str, Any]) -> str:
    split, summary = report["model_alone"], report["summary"]
    bare = report["bare_worker_papers_per_s"]
    pipes = [p["end_to_end_papers_per_s"] for p in report["pipeline_rounds"]]
    latency = summary["latency_s"]
    rows = [
        ("model alone", f"{split['predict_papers_per_s']:.1f} papers/s", "predict_texts"),
        ("  embedding alone", f"{split['embed_papers_per_s']:.1f} papers/s", "embed"),
        ("  heads alone", f"{split['heads_papers_per_s']:.0f} papers/s", "predict_embeddings"),
        (
            "bare worker (no Kafka)",
            " / ".join(f"{r:.1f}" for r in bare) + " papers/s",
            "decode+classify+1 txn per batch; before, between and after the rounds",
        ),
        (
            "pipeline end-to-end",
            " / ".join(f"{r:.1f}" for r in pipes) + " papers/s",
            f"{report['papers']} papers per round",
        ),
        (
            "pipeline / bare worker",
            f"median {summary['median']} (min {summary['min']}, max {summary['max']})",
            f"{len(pipes)} rounds",
        ),
        (
            "single paper, ingest -> label",
            f"p50 {latency['p50']} s, p95 {latency['p95']} s, p99 {latency['p99']} s",
            f"{latency['singles']} papers, one at a time",
        ),
        ("embedding share of model", f"{summary['embedding_share_of_model']}", "of time"),
    ]
    cpu = report.get("cpu_per_paper")
    if cpu:
        rows.append(
            (
                "CPU per paper: pipeline / bare",
                f"{cpu['pipeline_over_bare_cpu']}",
                "pipeline ms "
                + ", ".join(f"{k} {v}" for k, v in cpu["pipeline_ms"].items())
                + "; bare ms "
                + ", ".join(f"{k} {v}" for k, v in cpu["bare_worker_ms"].items()),
            )
        )
    overlap = report.get("one_at_a_time_summary")
    if overlap:
        rows.append(
            (
                "pipeline / one batch at a time",
                f"median {overlap['median']} (min {overlap['min']}, max {overlap['max']})",
                "the worker's default against ARXIV_STREAM_CONCURRENT_BATCHES=1",
            )
        )
    workers = report.get("workers_summary")
    if workers:
        rows.append(
            (
                f"{workers['workers']} workers / 1, same cores",
                f"median {workers['median']} (min {workers['min']}, max {workers['max']})",
                f"messages sent twice: {workers['classified_messages_twice']}",
            )
        )
    return format_table(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    shared = shared_data_dir()
    if not (shared / FEED).is_file():
        raise SystemExit(f"real data not found at {shared}; set ARXIV_STREAM_SHARED_DATA")
    # Directly under the system temp dir: the PostgreSQL socket lives in pgdata, and a
    # socket path must stay under ~100 bytes.
    work = Path(tempfile.mkdtemp(prefix="arxiv-bench-"))
    try:
        papers, warmup, singles = load_papers(shared, args.papers, args.singles)
        model = prepare_model(args, shared, work)
        say(f"model alone: {len(papers)} papers with {model.version}")
        alone = BareInference(
            model.models_dir / model.version, batch_size=args.batch_size, device=args.device
        )
        split = alone.measure([p.text for p in papers])
        machine_info = machine(split["device"])  # after loading: torch threads are set then
        with EmbeddedPostgres(work / "bare-pg") as pg:
            migrate.upgrade(pg.url)
            register_model(pg.url, model)
            bare = BareWorker(
                alone.classifier, pg.url, batch_size=args.batch_size,
                cache_dir=work / "bare-cache", pgdata=pg.pgdata,
            )  # fmt: skip
            bare.papers_per_s(papers)  # untimed: the papers and embeddings are new only here
            bare_rates = [bare.papers_per_s(papers)]
            bare_cpu = [bare.last_cpu]
            pipelines: list[dict[str, Any]] = []
            scaled: list[dict[str, Any]] = []
            serial: list[dict[str, Any]] = []

            def one_at_a_time(round_: int) -> None:
                say(f"round {round_}/{args.rounds}: pipeline, one batch at a time")
                serial.append(
                    run_pipeline(
                        model,
                        papers,
                        warmup,
                        work=work / f"round-{round_}-serial",
                        batch_size=args.batch_size,
                        device=args.device,
                        timeout_s=args.timeout,
                        overrides={"concurrent_batches": "1"},
                    )
                )

            for round_ in range(1, args.rounds + 1):
                if args.one_at_a_time and round_ % 2 == 0:  # which goes first alternates
                    one_at_a_time(round_)
                say(f"round {round_}/{args.rounds}: pipeline (PostgreSQL + Tansu + a worker)")
                pipelines.append(
                    run_pipeline(
                        model,
                        papers,
                        warmup,
                        singles=singles,
                        work=work / f"round-{round_}",
                        batch_size=args.batch_size,
                        device=args.device,
                        timeout_s=args.timeout,
                    )
                )
                if args.one_at_a_time and round_ % 2 == 1:
                    one_at_a_time(round_)
                if args.workers > 1:
                    say(f"round {round_}/{args.rounds}: pipeline with {args.workers} workers")
                    scaled.append(
                        run_pipeline(
                            model,
                            papers,
                            warmup,
                            workers=args.workers,
                            work=work / f"round-{round_}-x{args.workers}",
                            batch_size=args.batch_size,
                            device=args.device,
                            timeout_s=args.timeout,
                        )
                    )
                say(f"round {round_}/{args.rounds}: bare worker")
                bare_rates.append(bare.papers_per_s(papers))
                bare_cpu.append(bare.last_cpu)
    finally:
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report = build_report(
        split, bare_rates, pipelines, model, machine_info, scaled, bare_cpu, serial
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    print(f"machine: {m['cpu_model']}, {m['usable_cpus']} cores, torch {m['torch_version']}")
    print(f"  {m['torch_threads']} threads, device {m['device']}")
    print(f"model: {model.version} ({model.embedder_id}), N = {report['papers']}")
    print(table(report))
    print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
