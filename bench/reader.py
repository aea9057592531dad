"""The snapshot reader against bare orjson on the same file, in CPU-seconds (so load on a
shared machine cancels better than wall time would), interleaved rounds.

    .venv/bin/python -m bench.reader                    # arxiv-corpus-part03 (100k papers)
    .venv/bin/python -m bench.reader --file F --rounds 3

``orjson``: gunzip + ``orjson.loads`` of every line (the floor: no reader can parse JSON
lines for less); ``reader``: ``ingest.snapshot.read_snapshot`` (parse, clean text, dates,
validate into Papers). Reported: MB (uncompressed) per CPU-second of each, their ratio per
round (median, min, max), and the reader's peak memory growth (tracemalloc), which stays
flat because papers stream. Written to bench/results/reader.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson

from bench.common import machine, shared_data_dir
from ingest.snapshot import read_snapshot

RESULTS = Path(__file__).parent / "results" / "reader.json"


def _bare(path: Path) -> tuple[int, int]:
    size = count = 0
    with gzip.open(path, "rb") as lines:
        for line in lines:
            size += len(line)
            orjson.loads(line)
            count += 1
    return size, count


def _reader(path: Path) -> int:
    return sum(1 for _ in read_snapshot(path))


def _cpu(call: Any) -> tuple[float, Any]:
    started = time.process_time()
    out = call()
    return time.process_time() - started, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--file", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    path = args.file or shared_data_dir() / "arxiv-corpus" / "arxiv-corpus-part03.jsonl.gz"
    (megabytes, lines) = (0.0, 0)
    bare_rates, reader_rates, ratios = [], [], []
    for _ in range(args.rounds):
        bare_s, (size, lines) = _cpu(lambda: _bare(path))
        megabytes = size / 1e6
        reader_s, papers = _cpu(lambda: _reader(path))
        bare_rates.append(megabytes / bare_s)
        reader_rates.append(megabytes / reader_s)
        ratios.append(reader_rates[-1] / bare_rates[-1])
    tracemalloc.start()
    _reader(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    report = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine("cpu"),
        "file": str(path),
        "lines": lines,
        "papers": papers,
        "uncompressed_mb": round(megabytes, 1),
        "orjson_mb_per_cpu_s": round(statistics.median(bare_rates), 2),
        "reader_mb_per_cpu_s": round(statistics.median(reader_rates), 2),
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "reader_peak_traced_mb": round(peak / 1e6, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
