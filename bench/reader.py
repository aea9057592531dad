"""The snapshot reader against bare orjson on the same file, in CPU-seconds, alternated
chunk by chunk so that load swings on a shared machine cancel.

    .venv/bin/python -m bench.reader                    # arxiv-corpus-part03 (100k papers)
    .venv/bin/python -m bench.reader --file F --rounds 3 --chunk 2000

``orjson``: the standard library's gunzip + ``orjson.loads`` of every line (the baseline the
issue names: a reader that only parses JSON lines); ``reader``: ``ingest.snapshot.
read_snapshot`` (its own gunzip, typed decoding, text cleaning, dates, validation into
Papers). Each round walks the file with both at once: ``--chunk`` lines of the baseline, then
as many papers of the reader, each timed in CPU-seconds (``time.process_time``), so the two
sides of a pair are measured within milliseconds of each other. A round's ratio is the
reader's MB per CPU-second over the baseline's, from the round's summed times; the report
gives the median and spread over the rounds, and the reader's peak memory growth
(tracemalloc), which stays flat because papers stream. Written to bench/results/reader.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import time
import tracemalloc
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import orjson

from bench.common import machine, shared_data_dir
from ingest.snapshot import read_snapshot

RESULTS = Path(__file__).parent / "results" / "reader.json"


def _bare_lines(path: Path) -> Iterator[int]:
    """The baseline, one line at a time: yields each line's size in bytes."""
    with gzip.open(path, "rb") as lines:
        for line in lines:
            orjson.loads(line)
            yield len(line)


def paired_round(path: Path, chunk: int) -> dict[str, float]:
    """One pass over ``path`` with both readers, alternating ``chunk`` lines of each;
    their CPU-seconds summed over the pairs, the bytes read and the papers yielded."""
    bare, papers = _bare_lines(path), read_snapshot(path)
    bare_s = reader_s = 0.0
    size = count = 0
    while True:
        started = time.process_time()
        sizes = list(islice(bare, chunk))
        bare_s += time.process_time() - started
        started = time.process_time()
        got = sum(1 for _ in islice(papers, chunk))
        reader_s += time.process_time() - started
        size, count = size + sum(sizes), count + got
        if not sizes and not got:
            return {"bare_s": bare_s, "reader_s": reader_s, "bytes": size, "papers": count}


def peak_traced_mb(path: Path) -> float:
    """The reader's peak traced memory over a whole pass, in MB."""
    tracemalloc.start()
    try:
        for _ in read_snapshot(path):
            pass
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def summarize(rounds: list[dict[str, float]]) -> dict[str, Any]:
    """MB per CPU-second of each side (medians over rounds) and the reader/baseline ratio per
    round (median, min, max)."""
    megabytes = rounds[0]["bytes"] / 1e6
    bare_rates = [megabytes / r["bare_s"] for r in rounds]
    reader_rates = [megabytes / r["reader_s"] for r in rounds]
    ratios = [r["bare_s"] / r["reader_s"] for r in rounds]
    return {
        "uncompressed_mb": round(megabytes, 1),
        "papers": int(rounds[0]["papers"]),
        "orjson_mb_per_cpu_s": round(statistics.median(bare_rates), 2),
        "reader_mb_per_cpu_s": round(statistics.median(reader_rates), 2),
        "ratio_per_round": [round(r, 3) for r in ratios],
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--file", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=2000, help="lines per side per pair")
    args = parser.parse_args(argv)
    path = args.file or shared_data_dir() / "arxiv-corpus" / "arxiv-corpus-part03.jsonl.gz"
    rounds = [paired_round(path, args.chunk) for _ in range(args.rounds)]
    report = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine("cpu"),
        "file": str(path),
        "chunk_lines": args.chunk,
        **summarize(rounds),
        "reader_peak_traced_mb": round(peak_traced_mb(path), 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
