"""Throughput of the pipeline against bare model inference, in one run.

    python -m bench.throughput [--papers N] [--max-train N] [--model-dir DIR]
                               [--out bench/results/throughput.json]

1. bare inference (bench/bare.py): the model alone over the N distinct papers of the real
   all-archives RSS feed of 28 Nov 2024, in the worker's batch size: papers/s, plus
   embedding alone and heads alone (the baseline is timed again after step 2: the ratio
   uses the mean, and a drift between the two says the machine was not idle);
2. the full pipeline (bench/pipeline.py) on embedded PostgreSQL + Tansu + one worker
   subprocess: ingest-only time, and end-to-end papers/s until all N labels are in
   PostgreSQL and on the classified topic;
3. a JSON report (machine, model, N, each rate, the ratios) and a table on stdout.

Without ``--model-dir`` a logreg model is trained first from the real Kaggle-format sample
(``--max-train`` papers), in the run's temporary directory. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.bare import BareInference
from bench.common import (
    FEED,
    SAMPLE,
    distinct_papers,
    format_table,
    machine,
    ratio,
    shared_data_dir,
)
from bench.pipeline import BenchModel, run_pipeline
from core.schemas import Paper
from core.settings import load_settings
from ingest.rss import parse_rss
from ingest.snapshot import read_snapshot
from models.bundle import read_config

DEFAULT_OUT = Path("bench/results/throughput.json")
DRIFT_TOLERANCE = 0.10
"""Largest change of the baseline between its two measurements before a warning."""


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
    parser.add_argument("--timeout", type=float, default=1800.0, help="pipeline time limit, s")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    return parser.parse_args(argv)


_STARTED = time.monotonic()


def say(message: str) -> None:
    """Progress goes to stderr: stdout carries only the result table."""
    print(f"[bench {time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def load_papers(shared: Path, n: int | None) -> tuple[list[Paper], Paper]:
    """The first ``n`` distinct feed papers, and a warm-up paper that is not among them."""
    feed = distinct_papers(parse_rss((shared / FEED).read_bytes()))
    papers = feed if n is None else feed[:n]
    if n is not None and n > len(feed):
        say(f"the feed has {len(feed)} distinct papers; using all of them")
    ids = {p.arxiv_id for p in feed}
    warmup = next(p for p in read_snapshot(shared / SAMPLE) if p.arxiv_id not in ids)
    return papers, warmup


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
    metrics_file = model_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    return BenchModel(model_dir.parent, config.version, config.model_id, metrics)


def build_report(
    bare: dict[str, Any], pipeline: dict[str, Any], model: BenchModel, machine_info: dict[str, Any]
) -> dict[str, Any]:
    """The JSON document: inputs, both measurements and the ratios against the baseline."""
    test = model.metrics.get("test", {})
    before, after = bare["predict_papers_per_s"], bare.get("predict_after_pipeline_papers_per_s")
    # The baseline is measured before and after the pipeline; their mean brackets it.
    baseline = before if after is None else (before + after) / 2
    drift = None if after is None else ratio(after, before)
    return {
        "benchmark": "throughput",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info,
        "model": {
            "version": model.version,
            "embedder": model.embedder_id,
            "embedder_variant": bare["embedder_variant"],
            "test_domain_accuracy": test.get("domain", {}).get("accuracy"),
            "test_category_accuracy": test.get("category", {}).get("accuracy"),
        },
        "feed": FEED,
        "papers": bare["papers"],
        "batch_size": bare["batch_size"],
        "bare": bare | {"baseline_papers_per_s": round(baseline, 2)},
        "pipeline": pipeline,
        "ratios": {
            "pipeline_over_bare_inference": ratio(pipeline["end_to_end_papers_per_s"], baseline),
            "baseline_after_over_before": drift,
            "embedding_share_of_bare_inference": ratio(
                bare["embed_s"], bare["embed_s"] + bare["heads_s"]
            ),
            "heads_share_of_bare_inference": ratio(
                bare["heads_s"], bare["embed_s"] + bare["heads_s"]
            ),
        },
    }


def table(report: dict[str, Any]) -> str:
    bare, pipe, ratios = report["bare"], report["pipeline"], report["ratios"]
    n = report["papers"]
    rows = [
        (
            "bare inference",
            f"{bare['baseline_papers_per_s']:.1f} papers/s",
            "predict_texts, mean of before/after",
        ),
        ("  embedding alone", f"{bare['embed_papers_per_s']:.1f} papers/s", "embedder.encode"),
        ("  heads alone", f"{bare['heads_papers_per_s']:.0f} papers/s", "predict_embeddings"),
        ("ingest only", f"{pipe['ingest_papers_per_s']:.0f} papers/s", "store + publish"),
        (
            "pipeline end-to-end",
            f"{pipe['end_to_end_papers_per_s']:.1f} papers/s",
            f"{n} papers in {pipe['end_to_end_s']:.1f} s",
        ),
        ("pipeline / bare inference", f"{ratios['pipeline_over_bare_inference']}", "ratio"),
        ("embedding share of bare", f"{ratios['embedding_share_of_bare_inference']}", "of time"),
        ("worker ready", f"{pipe['worker_ready_s']:.1f} s", "start + join + first batch"),
    ]
    text = format_table(rows)
    drift = ratios.get("baseline_after_over_before")
    if drift is not None and abs(drift - 1) > DRIFT_TOLERANCE:
        text += (
            f"\nWARNING: the baseline moved {drift - 1:+.0%} between before and after the "
            "pipeline: the machine was not idle, so these ratios are not to be trusted."
        )
    return text


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
        papers, warmup = load_papers(shared, args.papers)
        model = prepare_model(args, shared, work)
        texts = [p.text for p in papers]
        say(f"bare inference: {len(texts)} papers with {model.version}")
        baseline = BareInference(
            model.models_dir / model.version, batch_size=args.batch_size, device=args.device
        )
        bare = baseline.measure(texts)
        machine_info = machine(bare["device"])  # after loading: torch threads are set then
        say("pipeline: embedded PostgreSQL + Tansu + one worker")
        pipeline = run_pipeline(
            model,
            papers,
            warmup,
            work=work,
            batch_size=args.batch_size,
            device=args.device,
            timeout_s=args.timeout,
        )
        say("bare inference again, to see whether the machine stayed as it was")
        bare["predict_after_pipeline_papers_per_s"] = baseline.predict_again(texts)
    finally:
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report = build_report(bare, pipeline, model, machine_info)
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
