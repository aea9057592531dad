"""Reading papers (with their labels) and splitting them for training."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from core.schemas import Paper
from training.labels import PaperLabels, column, labels_of
from training.splits import Split, SplitKind, stratified_split, time_split


@dataclass
class PaperData:
    papers: list[Paper]
    labels: list[PaperLabels]
    skipped: dict[str, int]


# --- reading ----------------------------------------------------------------------------------
def read_papers(
    source: Iterable[Paper] | Path | str, *, max_samples: int | None, show: bool
) -> PaperData:
    if isinstance(source, (str, Path)):
        from ingest.snapshot import read_snapshot

        stream: Iterable[Paper] = read_snapshot(Path(source), max_samples=max_samples)
    else:
        stream = source
    skipped: Counter[str] = Counter()
    by_id: dict[str, tuple[Paper, PaperLabels]] = {}
    for paper in _bar(stream, show, "read", "paper"):
        labels = labels_of(paper)
        if labels is None:
            skipped["no_category"] += 1
        elif not (paper.abstract or "").strip():
            skipped["no_abstract"] += 1
        else:
            if paper.arxiv_id in by_id:
                skipped["duplicate_id"] += 1
            by_id[paper.arxiv_id] = (paper, labels)
    if max_samples is not None and len(by_id) > max_samples:
        by_id = dict(list(by_id.items())[:max_samples])
    kept = list(by_id.values())
    return PaperData([p for p, _ in kept], [lab for _, lab in kept], dict(skipped))


def _bar(items: Iterable[Paper], show: bool, desc: str, unit: str) -> Iterator[Paper]:
    if not show:
        yield from items
        return
    from tqdm.auto import tqdm

    yield from tqdm(items, desc=desc, unit=unit)


def split_papers(
    data: PaperData, kind: SplitKind, *, val_fraction: float, test_fraction: float, seed: int
) -> Split:
    keys = [p.arxiv_id for p in data.papers]
    if kind == "time":
        dates = [p.submitted for p in data.papers]
        parts = time_split(
            keys, dates, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
        )
    else:
        strata = column(data.labels, "category")
        parts = stratified_split(
            keys, strata, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
        )
    if not parts.train or not parts.val or not parts.test:
        raise ValueError(f"too few papers to train: split {parts.summary()}")
    return parts
