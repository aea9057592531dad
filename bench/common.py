"""Helpers shared by the benchmarks: where the real data is, the machine, rates and a table.

Everything here is pure or reads only the local machine, so it is unit-tested
(tests/unit/test_bench.py); the measurements themselves live in bench/bare.py and
bench/pipeline.py.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from core.schemas import Paper

REPO = Path(__file__).resolve().parent.parent
FEED = "rss/aioarxiv-2024-11-28/rss_all-archives_2024-11-28.xml"
SAMPLE = "arxiv-sample/arxiv-metadata-sample.jsonl.gz"


def shared_data_dir() -> Path:
    """``$ARXIV_STREAM_SHARED_DATA``, else ``../shared/data`` beside the repository."""
    env = os.environ.get("ARXIV_STREAM_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def distinct_papers(papers: Iterable[Paper]) -> list[Paper]:
    """One paper per arXiv id (its highest version), in order of first appearance.

    The ingester publishes one message per id anyway (``upsert_papers`` keeps the highest
    version), so N must count distinct ids for "N labels in PostgreSQL" to mean N papers.
    """
    chosen: dict[str, Paper] = {}
    for paper in papers:
        seen = chosen.get(paper.arxiv_id)
        if seen is None or paper.version > seen.version:
            chosen[paper.arxiv_id] = paper
    return list(chosen.values())


def batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """``items`` cut into consecutive slices of ``size`` (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    return [items[i : i + size] for i in range(0, len(items), size)]


def rate(count: int, seconds: float) -> float:
    """Items per second; 0 for an empty or instant run rather than a division error."""
    return count / seconds if seconds > 0 and count > 0 else 0.0


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator`` rounded to 3 places; None when the baseline is 0."""
    return round(numerator / denominator, 3) if denominator > 0 else None


def cpu_model(cpuinfo: str | None = None) -> str:
    """The ``model name`` line of /proc/cpuinfo (else platform.processor(), else unknown)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or "unknown"


def cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """The bf16/AMX/AVX-512 flags, which decide whether the bf16 embedder variant pays."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            wanted = ("avx512_bf16", "amx_bf16", "amx_tile", "avx512f", "avx2")
            present = set(value.split())
            return [flag for flag in wanted if flag in present]
    return []


def machine(device: str) -> dict[str, Any]:
    """What a reader needs to compare runs: CPU, cores, torch and its threads, device."""
    import torch

    from models.device import available_cpus

    return {
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": available_cpus(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "device": device,
        "cuda_device": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def format_table(rows: Sequence[tuple[str, str, str]]) -> str:
    """Three left-aligned text columns (what, value, note) with a header rule."""
    header = ("measurement", "value", "note")
    everything = [header, *rows]
    widths = [max(len(row[i]) for row in everything) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in everything
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
