"""Deterministic train/validation/test splits, as index lists into the papers given.

stratified  per class (canonical primary category), members ordered by sha256(seed:key) and
            cut into val/test/train; a running remainder across classes keeps the overall
            fractions exact while each class gets floor or ceil of its share. Classes with
            fewer than ``min_members`` papers go wholly to train. Depends only on the
            (key, class) pairs and the seed, not on input order.
time        by submission date: the newest ``test_fraction`` of dated papers is test, the
            next newest ``val_fraction`` is validation, the rest and every undated paper train.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

SplitKind = Literal["stratified", "time"]


@dataclass(frozen=True)
class Split:
    train: list[int]
    val: list[int]
    test: list[int]
    kind: SplitKind
    seed: int

    def summary(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "seed": self.seed,
            "train": len(self.train),
            "val": len(self.val),
            "test": len(self.test),
        }


def _check(val_fraction: float, test_fraction: float) -> None:
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError(f"bad split fractions val={val_fraction} test={test_fraction}")


def _rank(seed: int, key: str) -> bytes:
    return hashlib.sha256(f"{seed}:{key}".encode()).digest()


def stratified_split(
    keys: Sequence[str],
    strata: Sequence[str],
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    min_members: int = 3,
) -> Split:
    """Split positions 0..n-1 (``keys``: arXiv ids, ``strata``: class per paper)."""
    _check(val_fraction, test_fraction)
    if len(keys) != len(strata):
        raise ValueError("keys and strata differ in length")
    members: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(strata):
        members[label].append(i)
    train: list[int] = []
    val: list[int] = []
    test: list[int] = []
    eligible = 0  # papers in classes big enough to split, seen so far
    for label in sorted(members):
        rows = sorted(members[label], key=lambda i: (_rank(seed, keys[i]), i))
        if len(rows) < min_members:
            train.extend(rows)
            continue
        eligible += len(rows)
        n_val = max(min(int(eligible * val_fraction + 0.5) - len(val), len(rows) - 1), 0)
        n_test = int(eligible * test_fraction + 0.5) - len(test)
        n_test = max(min(n_test, len(rows) - 1 - n_val), 0)
        val.extend(rows[:n_val])
        test.extend(rows[n_val : n_val + n_test])
        train.extend(rows[n_val + n_test :])
    return Split(sorted(train), sorted(val), sorted(test), "stratified", seed)


def time_split(
    keys: Sequence[str],
    dates: Sequence[datetime | None],
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> Split:
    """Newest dated papers to test, next newest to val; undated always train."""
    _check(val_fraction, test_fraction)
    if len(keys) != len(dates):
        raise ValueError("keys and dates differ in length")
    dated = sorted((d, keys[i], i) for i, d in enumerate(dates) if d is not None)
    undated = [i for i, d in enumerate(dates) if d is None]
    n_test = int(len(dated) * test_fraction + 0.5)
    n_val = int(len(dated) * val_fraction + 0.5)
    cut_val, cut_test = len(dated) - n_test - n_val, len(dated) - n_test
    order = [i for _, _, i in dated]
    return Split(
        train=sorted(order[:cut_val] + undated),
        val=sorted(order[cut_val:cut_test]),
        test=sorted(order[cut_test:]),
        kind="time",
        seed=seed,
    )
