"""The default embedder variant against plain fp32 sentence-transformers, side by side.

    .venv/bin/python -m bench.embedder                  # 1,000 real abstracts, 3 rounds
    .venv/bin/python -m bench.embedder --texts 300 --rounds 2

Variants, all on the same real title+abstract texts (every 100th paper of
arxiv-corpus-part03, so lengths vary as in the corpus):
- ``baseline``: ``SentenceTransformer.encode(texts, batch_size=16)`` in input order, fp32 —
  what the issue measures against;
- ``fp32-sorted``: our Embedder, fp32, texts tokenised once and sorted into micro-batches;
- ``auto``: our Embedder as ``variant="auto"`` chooses on this machine (ov-bf16 on CPUs
  with native bf16 and OpenVINO), probe check included.
Rounds are interleaved (baseline, fp32-sorted, auto, baseline, ...) so load swings on a
shared machine hit every variant alike; the report gives each variant's median texts/s, its
ratio to the baseline per round (median, min, max) and cosine to the baseline's embeddings.
Written to bench/results/embedder.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import shared_data_dir
from ingest.snapshot import read_snapshot
from models.embedder import Embedder, resolve_model_path

RESULTS = Path(__file__).parent / "results" / "embedder.json"


def real_texts(n: int) -> list[str]:
    part = shared_data_dir() / "arxiv-corpus" / "arxiv-corpus-part03.jsonl.gz"
    if not part.exists():  # fall back to the sample
        part = shared_data_dir() / "arxiv-sample" / "arxiv-metadata-sample.jsonl.gz"
        return [p.text for p in islice(read_snapshot(part), 0, None, 5)][:n]
    return [p.text for p in islice(read_snapshot(part), 0, n * 100, 100)]


def machine() -> str:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in flags.splitlines()
                  if ln.startswith("model name")), platform.processor())  # fmt: skip
    extras = [f for f in ("avx512_bf16", "amx_bf16", "avx512_vnni") if f in flags]
    return f"{model}, {os.cpu_count()} CPUs, flags {' '.join(extras) or 'none of bf16/amx'}"


def run(n: int, rounds: int) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    texts = real_texts(n)
    plain = SentenceTransformer(resolve_model_path("all-MiniLM-L6-v2"), device="cpu")
    variants: dict[str, Any] = {
        "baseline": lambda: plain.encode(texts, batch_size=16, normalize_embeddings=True),
        "fp32-sorted": Embedder(device="cpu", variant="fp32").encode,
    }
    auto = Embedder(device="cpu", variant="auto")
    variants["auto"] = auto.encode
    plain.encode(texts[:32], batch_size=16)  # warm-up
    for name in ("fp32-sorted", "auto"):
        variants[name](texts[:32])
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    outputs: dict[str, np.ndarray] = {}
    for _ in range(rounds):
        for name, call in variants.items():
            started = time.perf_counter()
            out = call() if name == "baseline" else call(texts)
            seconds[name].append(time.perf_counter() - started)
            outputs[name] = np.asarray(out, dtype=np.float32)
    report: dict[str, Any] = {
        "machine": machine(),
        "texts": len(texts),
        "rounds": rounds,
        "auto_variant": auto.variant,
        "variants": {},
    }
    for name in variants:
        ratios = [b / s for b, s in zip(seconds["baseline"], seconds[name], strict=True)]
        cosine = np.sum(outputs[name] * outputs["baseline"], axis=1)
        report["variants"][name] = {
            "texts_per_s": round(len(texts) / statistics.median(seconds[name]), 1),
            "x_baseline_median": round(statistics.median(ratios), 2),
            "x_baseline_min": round(min(ratios), 2),
            "x_baseline_max": round(max(ratios), 2),
            "cosine_mean": round(float(cosine.mean()), 6),
            "cosine_min": round(float(cosine.min()), 6),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    report = run(args.texts, args.rounds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"{report['machine']}; {report['texts']} real texts, {report['rounds']} rounds")
    for name, row in report["variants"].items():
        print(
            f"  {name:<12} {row['texts_per_s']:>7.1f} texts/s  x{row['x_baseline_median']:.2f} "
            f"(min {row['x_baseline_min']:.2f}, max {row['x_baseline_max']:.2f})  "
            f"cosine mean {row['cosine_mean']:.5f} min {row['cosine_min']:.5f}"
        )
    print(f"auto chose {report['auto_variant']}; wrote {args.out}")


if __name__ == "__main__":
    main()
