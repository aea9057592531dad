"""Learning curve: the default model trained on growing shares of the 300k corpus, scored on
two fixed sets it never trained on. Recorded in bench/results/quality_curve.json and
docs/quality.md.

    .venv/bin/python -m bench.quality_curve                       # 5k, 30k, 100k, 300k
    .venv/bin/python -m bench.quality_curve --sizes 5000 30000    # a quicker curve
    .venv/bin/python -m bench.quality_curve --sizes 300000 --split time

Training reads ``$ARXIV_STREAM_SHARED_DATA/arxiv-corpus`` (default ../shared/data) with the
fixed holdout excluded (training.holdout: 1 paper in 20 by id hash) and takes the N papers
with the lowest sha256(seed:id): a uniform random subset, nested (every smaller set is
inside every larger one). Not a prefix: the corpus files are sorted by arXiv id, so the
first N papers are the oldest ones (a 5k prefix of part01 is 2007-2009 only).
Evaluation sets:
- ``holdout``: the holdout papers of arxiv-corpus-part03 (~5,000), never trained on;
- ``sample_test``: the test split of arxiv-sample as ``train --seed 13`` cuts it (its ids
  are not in the corpus).
Embeddings come from the shared cache (<data dir>/embedding-cache), so a size whose papers
are cached costs only its fit; each row records both the wall time and the texts embedded.
Models are written under a temporary directory and removed (``--keep`` keeps them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import shared_data_dir as shared_data
from core.settings import load_settings
from ingest.snapshot import read_snapshot
from models.cache import EmbeddingCache
from models.classifier import PaperClassifier
from training.evaluate import evaluate
from training.holdout import in_holdout
from training.train import train_model

log = logging.getLogger(__name__)
SIZES = (5_000, 30_000, 100_000, 300_000)
RESULTS = Path(__file__).parent / "results" / "quality_curve.json"


def evaluation_sets(data: Path) -> dict[str, list[Any]]:
    from lifecycle.evaluate import select_for_evaluation

    part03 = data / "arxiv-corpus" / "arxiv-corpus-part03.jsonl.gz"
    sample = data / "arxiv-sample" / "arxiv-metadata-sample.jsonl.gz"
    return {
        "holdout": [p for p in read_snapshot(part03) if in_holdout(p.arxiv_id)],
        "sample_test": select_for_evaluation(read_snapshot(sample), only_split="test", seed=13),
    }


def summary(metrics: dict[str, Any]) -> dict[str, float]:
    category = metrics["category"]
    return {
        "n": metrics["n"],
        "domain_accuracy": metrics["domain"]["accuracy"],
        "category_accuracy": category["accuracy"],
        "precision_at_1": category["precision_at_1"],
        "top5_micro_recall": category["top5_micro_recall"],
    }


def hashed_subset(papers: list[Any], size: int, seed: int) -> list[Any]:
    """The ``size`` papers with the lowest sha256(seed:id), in their original order."""
    rank = {p.arxiv_id: hashlib.sha256(f"{seed}:{p.arxiv_id}".encode()).digest() for p in papers}
    chosen = set(sorted(rank, key=rank.__getitem__)[:size])
    return [p for p in papers if p.arxiv_id in chosen]


def run(sizes: list[int], *, split: str, seed: int, keep: bool, tune: int) -> dict[str, Any]:
    settings = load_settings()
    data = shared_data()
    sets = evaluation_sets(data)
    corpus = [p for p in read_snapshot(data / "arxiv-corpus") if not in_holdout(p.arxiv_id)]
    models_dir = Path(tempfile.mkdtemp(prefix="arxiv-curve-"))
    rows = []
    try:
        for size in sizes:
            started = time.perf_counter()
            result = train_model(
                hashed_subset(corpus, size, seed),
                models_dir=models_dir,
                cache_dir=settings.embedding_cache_dir,
                seed=seed,
                split=split,  # type: ignore[arg-type]
                tune=tune,
                progress=False,
            )
            train_s = time.perf_counter() - started
            classifier = PaperClassifier.load(result.path, device="cpu")
            row: dict[str, Any] = {
                "size": size,
                "version": result.version,
                "train_wall_s": round(train_s, 1),
                "timing": result.metrics["timing"],
                "category_head": result.metrics["selection"]["category_head"],
                "text_weight": result.metrics["selection"]["text"]["text_weight"],
                "own_test": summary(result.metrics["test"]),
            }
            with EmbeddingCache(settings.embedding_cache_dir) as cache:
                for name, papers in sets.items():
                    row[name] = summary(evaluate(classifier, papers, cache=cache))
            log.info("size %d: %s", size, json.dumps(row))
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        if not keep:
            shutil.rmtree(models_dir, ignore_errors=True)
    return {
        "machine": f"{platform.processor() or platform.machine()}, {platform.node()}",
        "split": split,
        "seed": seed,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--split", choices=["stratified", "time"], default="stratified")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--tune", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the trained bundles")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    report = run(args.sizes, split=args.split, seed=args.seed, keep=args.keep, tune=args.tune)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
