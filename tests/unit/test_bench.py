"""The benchmark's pure helpers (bench/common.py, bench/throughput.py report). No timing here:
performance numbers come from running ``python -m bench.throughput``, never from tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.common import batches, cpu_flags, cpu_model, distinct_papers, format_table, rate, ratio
from bench.pipeline import BenchModel
from bench.throughput import (
    build_report,
    parse_args,
    percentile,
    summarize_overlap,
    summarize_rounds,
    summarize_workers,
    table,
)
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


def test_each_round_is_held_to_the_baselines_on_either_side_of_it() -> None:
    pipelines = [
        {"end_to_end_papers_per_s": 20.0, "single_paper_latencies_s": [0.2, 0.4]},
        {"end_to_end_papers_per_s": 15.0, "single_paper_latencies_s": [0.3]},
        {"end_to_end_papers_per_s": 30.0, "single_paper_latencies_s": [1.0]},
    ]
    summary = summarize_rounds([20.0, 20.0, 10.0, 30.0], pipelines)
    assert summary["pipeline_over_bare_worker"] == [1.0, 1.0, 1.5]  # 20/20, 15/15, 30/20
    assert (summary["median"], summary["min"], summary["max"]) == (1.0, 1.0, 1.5)
    latency = summary["latency_s"]
    assert latency["singles"] == 4 and latency["p50"] == 0.35 and latency["max"] == 1.0
    assert latency["p99"] == 0.982  # 0.4 + 0.97 * (1.0 - 0.4)
    with pytest.raises(ValueError, match="one baseline before every"):
        summarize_rounds([20.0], pipelines)
    assert percentile([], 0.5) is None


def test_report_and_table() -> None:
    split = {
        "embedder_variant": "fp32",
        "papers": 100,
        "batch_size": 64,
        "predict_papers_per_s": 25.0,
        "embed_s": 3.6,
        "embed_papers_per_s": 27.8,
        "heads_s": 0.4,
        "heads_papers_per_s": 1000.0,
    }
    pipeline = {"end_to_end_papers_per_s": 20.0, "single_paper_latencies_s": [0.25]}
    model = BenchModel(
        models_dir=Path("/m"),
        version="m20261121-230501-3fa2",
        embedder_id="e@fp32",
        metrics={"test": {"domain": {"accuracy": 0.9}}},
    )
    serial = [{"end_to_end_papers_per_s": 16.0}]
    report = build_report(
        split, [25.0, 15.0], [pipeline], model, {"cpu_model": "x"}, one_at_a_time=serial
    )
    assert report["summary"]["median"] == 1.0
    assert report["summary"]["embedding_share_of_model"] == 0.9
    assert report["model"]["test_domain_accuracy"] == 0.9
    text = table(report)
    assert "median 1.0 (min 1.0, max 1.0)" in text and "p99 0.25 s" in text
    assert "25.0 / 15.0 papers/s" in text
    assert "pipeline / one batch at a time" in text and "median 1.25" in text


def test_cli_defaults() -> None:
    args = parse_args([])
    assert args.papers is None and args.max_train == 1500 and args.batch_size == 64
    assert str(args.out) == "bench/results/throughput.json"
    assert parse_args(["--papers", "200"]).papers == 200


def test_n_workers_are_held_to_the_single_worker_of_the_same_round() -> None:
    single = [{"end_to_end_papers_per_s": 20.0}, {"end_to_end_papers_per_s": 10.0}]
    scaled = [
        {"end_to_end_papers_per_s": 19.0, "workers": 2, "classified_messages_twice": 0},
        {"end_to_end_papers_per_s": 11.0, "workers": 2, "classified_messages_twice": 3},
    ]
    summary = summarize_workers(single, scaled)
    assert summary["n_workers_over_one"] == [0.95, 1.1]
    assert (summary["median"], summary["min"], summary["max"]) == (1.025, 0.95, 1.1)
    assert summary["classified_messages_twice"] == [0, 3] and summary["workers"] == 2


def test_overlap_is_held_to_one_batch_at_a_time_in_the_same_round() -> None:
    default = [{"end_to_end_papers_per_s": 21.0}, {"end_to_end_papers_per_s": 18.0}]
    serial = [{"end_to_end_papers_per_s": 20.0}, {"end_to_end_papers_per_s": 20.0}]
    summary = summarize_overlap(default, serial)
    assert summary["default_over_one_at_a_time"] == [1.05, 0.9]
    assert (summary["median"], summary["min"], summary["max"]) == (0.975, 0.9, 1.05)
    with pytest.raises(ValueError):  # rounds pair up one to one
        summarize_overlap(default, serial[:1])
    assert parse_args([]).one_at_a_time and not parse_args(["--no-one-at-a-time"]).one_at_a_time


def test_retrain_bench_draws_new_papers_by_hash_and_reports_shares(tmp_path: Path) -> None:
    import gzip

    from bench.retrain import KINDS, new_ids, summarize, write_without

    ids = [f"2401.{i:05d}" for i in range(1000)]
    fresh = new_ids(ids, 0.01)
    assert len(fresh) == 10 and fresh == new_ids(list(reversed(ids)), 0.01)  # not by order
    assert fresh != set(ids[:10]) and len(new_ids(ids[:5], 0.01)) == 1  # at least one
    source, target = tmp_path / "all.jsonl.gz", tmp_path / "old.jsonl.gz"
    with gzip.open(source, "wt") as out:
        out.writelines(f'{{"id": "{i}"}}\n' for i in ids[:20])
    assert write_without(source, target, {ids[0], ids[3]}) == 18
    with gzip.open(target, "rt") as kept:
        assert ids[3] not in kept.read()

    rounds = [dict.fromkeys(KINDS, 10.0) | {"cold train": 100.0},
              dict.fromkeys(KINDS, 6.0) | {"cold train": 50.0}]  # fmt: skip
    report = summarize(rounds)
    share = report["warm retrain / cold train"]
    assert share["per_round"] == [0.1, 0.12] and share["median"] == 0.11
    assert (share["min"], share["max"]) == (0.1, 0.12)
    assert report["cold train"] == [100.0, 50.0]


def test_cpu_meter_counts_a_part_and_leaves_this_process_alone(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    from bench.cpu import CpuMeter, postgres_pids

    burn = (
        "import time\nt = time.process_time()\n"
        "while time.process_time() - t < 0.4: pass\ntime.sleep(30)"
    )
    child = subprocess.Popen([sys.executable, "-c", burn])
    try:
        meter = CpuMeter({"child": lambda: [child.pid], "me": lambda: [os.getpid()]}, alone=["me"])
        before = meter.read()
        deadline = time.monotonic() + 20
        spent = meter.since(before)
        while spent["child"] < 0.3 and time.monotonic() < deadline:
            time.sleep(0.2)  # the child burns its 0.4 CPU-seconds, this process waits
            spent = meter.since(before)
    finally:
        child.kill()
        child.wait()
    assert spent["child"] >= 0.2
    assert spent["me"] < 0.2  # its child's time is not counted in "alone" parts
    assert postgres_pids(tmp_path) == []  # no server there


def test_cpu_per_paper_takes_the_extra_cpu_apart() -> None:
    from bench.throughput import cpu_per_paper

    bare = [{"driver": 10.0, "postgres": 1.0}, {"driver": 12.0, "postgres": 1.0}]
    pipelines = [{"cpu_s": {"workers": 11.0, "tansu": 1.0, "postgres": 2.0, "driver": 1.0}}]
    found = cpu_per_paper(bare, pipelines, papers=1000)
    assert found["bare_worker_ms"] == {"driver": 11.0, "postgres": 1.0}
    assert found["pipeline_ms"]["tansu"] == 1.0
    assert found["pipeline_over_bare_cpu"] == 1.25
    assert cpu_per_paper([], pipelines, papers=1000) == {}
