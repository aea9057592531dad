"""The benchmark's pure helpers (bench/common.py, bench/throughput.py report). No timing here:
performance numbers come from running ``python -m bench.throughput``, never from tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.common import batches, cpu_flags, cpu_model, distinct_papers, format_table, rate, ratio
from bench.pipeline import BenchModel
from bench.throughput import build_report, parse_args, table
from core.schemas import Paper

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14
flags\t\t: fpu avx2 avx512f avx512_bf16
processor\t: 1
model name\t: AMD EPYC 9R14
"""


def _paper(arxiv_id: str, version: int) -> Paper:
    return Paper(
        arxiv_id=arxiv_id,
        version=version,
        title=f"title {arxiv_id}",
        abstract="an abstract",
        categories=["cs.LG"],
        source="rss",
    )


def test_distinct_papers_keeps_highest_version_in_first_seen_order() -> None:
    papers = [
        _paper("2411.00001", 1),
        _paper("2411.00002", 1),
        _paper("2411.00001", 3),
        _paper("2411.00001", 2),
    ]
    out = distinct_papers(papers)
    assert [(p.arxiv_id, p.version) for p in out] == [("2411.00001", 3), ("2411.00002", 1)]


def test_batches_cover_everything_in_order() -> None:
    assert batches(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    assert batches([], 64) == []
    with pytest.raises(ValueError):
        batches([1], 0)


def test_rate_and_ratio_guard_zero() -> None:
    assert rate(100, 4.0) == 25.0
    assert rate(0, 1.0) == 0.0 and rate(5, 0.0) == 0.0
    assert ratio(1.0, 3.0) == 0.333
    assert ratio(1.0, 0.0) is None


def test_cpu_model_and_flags_from_cpuinfo() -> None:
    assert cpu_model(CPUINFO) == "AMD EPYC 9R14"
    assert cpu_flags(CPUINFO) == ["avx512_bf16", "avx512f", "avx2"]
    assert cpu_flags("") == []


def test_format_table_aligns_columns() -> None:
    text = format_table([("a", "1", "x"), ("longer name", "22", "")])
    lines = text.splitlines()
    assert lines[0].startswith("measurement") and set(lines[1]) <= {"-", " "}
    assert lines[3].startswith("longer name  22")
    assert lines[2].index("1") == lines[3].index("22")


def test_report_ratios_and_table() -> None:
    bare = {
        "embedder_variant": "fp32",
        "papers": 100,
        "batch_size": 64,
        "predict_s": 4.0,
        "predict_papers_per_s": 25.0,
        "embed_s": 3.6,
        "embed_papers_per_s": 27.8,
        "heads_s": 0.4,
        "heads_papers_per_s": 1000.0,
    }
    pipeline = {
        "ingest_papers_per_s": 2000.0,
        "end_to_end_papers_per_s": 20.0,
        "end_to_end_s": 5.0,
        "worker_ready_s": 9.0,
    }
    model = BenchModel(
        models_dir=Path("/m"),
        version="m20261121-230501-3fa2",
        embedder_id="e@fp32",
        metrics={"test": {"domain": {"accuracy": 0.9}}},
    )
    report = build_report(bare, pipeline, model, {"cpu_model": "x"})
    assert report["ratios"] == {
        "pipeline_over_bare_inference": 0.8,
        "baseline_after_over_before": None,
        "embedding_share_of_bare_inference": 0.9,
        "heads_share_of_bare_inference": 0.1,
    }
    assert report["model"]["test_domain_accuracy"] == 0.9
    assert report["model"]["test_category_accuracy"] is None
    assert "0.8" in table(report) and "WARNING" not in table(report)

    # measured again after the pipeline: the ratio uses the mean, a drift is flagged
    bare["predict_after_pipeline_papers_per_s"] = 15.0
    report = build_report(bare, pipeline, model, {"cpu_model": "x"})
    assert report["bare"]["baseline_papers_per_s"] == 20.0
    assert report["ratios"]["pipeline_over_bare_inference"] == 1.0
    assert report["ratios"]["baseline_after_over_before"] == 0.6
    assert "WARNING: the baseline moved -40%" in table(report)


def test_cli_defaults() -> None:
    args = parse_args([])
    assert args.papers is None and args.max_train == 1500 and args.batch_size == 64
    assert str(args.out) == "bench/results/throughput.json"
    assert parse_args(["--papers", "200"]).papers == 200
