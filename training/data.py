"""Reading papers (with their labels) and splitting them for training."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from core.progress import progress_iter
from core.schemas import Paper
from ingest.snapshot import SnapshotSource, read_snapshot
from training.holdout import in_holdout
from training.labels import PaperLabels, column, labels_of
from training.splits import Split, SplitKind, stratified_split, time_split


@dataclass
class PaperData:
    papers: list[Paper]
    labels: list[PaperLabels]
    skipped: dict[str, int]


# --- reading ----------------------------------------------------------------------------------
def read_papers(
    source: Iterable[Paper] | SnapshotSource,
    *,
    max_samples: int | None,
    show: bool,
    exclude_holdout: bool = False,
) -> PaperData:
    """Papers with an abstract and a category (repeated ids: the last wins), at most
    ``max_samples``. ``source``: papers, or snapshot file(s)/directory (ingest.snapshot).
    ``exclude_holdout`` drops the fixed evaluation holdout (training.holdout) before counting."""
    if _is_paths(source):
        stream: Iterable[Paper] = read_snapshot(source)  # type: ignore[arg-type]
    else:
        stream = source  # type: ignore[assignment]
    skipped: Counter[str] = Counter()
    by_id: dict[str, tuple[Paper, PaperLabels]] = {}
    for paper in progress_iter(stream, desc="read", unit="paper", enabled=show):
        if max_samples is not None and len(by_id) >= max_samples and paper.arxiv_id not in by_id:
            break
        labels = labels_of(paper)
        if exclude_holdout and in_holdout(paper.arxiv_id):
            skipped["holdout"] += 1
        elif labels is None:
            skipped["no_category"] += 1
        elif not (paper.abstract or "").strip():
            skipped["no_abstract"] += 1
        else:
            if paper.arxiv_id in by_id:
                skipped["duplicate_id"] += 1
            by_id[paper.arxiv_id] = (paper, labels)
    kept = list(by_id.values())
    return PaperData([p for p, _ in kept], [lab for _, lab in kept], dict(skipped))


def _is_paths(source: object) -> bool:
    if isinstance(source, (str, Path)):
        return True
    return isinstance(source, (list, tuple)) and all(isinstance(s, (str, Path)) for s in source)


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
