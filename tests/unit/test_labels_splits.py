"""Label spaces from declared categories, and deterministic splits."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from core.schemas import Paper
from training.labels import PaperLabels, category_mapping, column, labels_of
from training.splits import stratified_split, time_split


def paper(categories: list[str], arxiv_id: str = "2411.00001", **kw: object) -> Paper:
    return Paper(
        arxiv_id=arxiv_id,
        version=1,
        title="T",
        abstract="A",
        categories=categories,
        source="snapshot",
        **kw,
    )


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        (["cs.LG", "stat.ML"], ("Computer Science", "grp_cs", "cs", "cs.LG", ("cs.LG", "stat.ML"))),
        (
            ["chao-dyn", "math.DS"],
            ("Physics", "grp_physics", "nlin", "nlin.CD", ("nlin.CD", "math.DS")),
        ),
        (["math.MP", "math-ph"], ("Physics", "grp_physics", "math-ph", "math-ph", ("math-ph",))),
        (["stat.ME"], ("Mathematics", "grp_stat", "stat", "stat.ME", ("stat.ME",))),
        (["q-fin.EC"], ("Economics", "grp_econ", "econ", "econ.GN", ("econ.GN",))),
        (["cs.SY", "eess.SY"], ("Engineering", "grp_eess", "eess", "eess.SY", ("eess.SY",))),
        (["test.XX"], ("Other", "grp_other", "test", "test.XX", ("test.XX",))),
    ],
)
def test_labels_of(declared: list[str], expected: tuple[object, ...]) -> None:
    labels = labels_of(paper(declared))
    assert labels == PaperLabels(*expected)  # type: ignore[arg-type]


def test_no_category_means_no_labels() -> None:
    assert labels_of(paper([])) is None
    assert labels_of(paper(["  "])) is None


def test_category_mapping_and_column() -> None:
    mapping = category_mapping(["hep-th", "cs.LG", "hep-th"])
    assert mapping == {
        "cs.LG": {"domain": "Computer Science", "group": "grp_cs", "archive": "cs"},
        "hep-th": {"domain": "Physics", "group": "grp_physics", "archive": "hep-th"},
    }
    labels = [labels_of(paper(["cs.LG"])), labels_of(paper(["hep-th"]))]
    assert column([lab for lab in labels if lab], "archive") == ["cs", "hep-th"]


def corpus(seed: int = 0) -> tuple[list[str], list[str]]:
    """1,000 ids over classes of sizes 400, 300, 199, 60, 20, 10, 5, 3, 2 and 1."""
    sizes = {
        "a": 400,
        "b": 300,
        "c": 199,
        "d": 60,
        "e": 20,
        "f": 10,
        "g": 5,
        "h": 3,
        "i": 2,
        "j": 1,
    }
    strata = [label for label, n in sizes.items() for _ in range(n)]
    keys = [f"2401.{i:05d}" for i in range(len(strata))]
    pairs = list(zip(keys, strata, strict=True))
    random.Random(seed).shuffle(pairs)
    return [k for k, _ in pairs], [s for _, s in pairs]


def test_stratified_split_is_a_deterministic_partition() -> None:
    keys, strata = corpus()
    split = stratified_split(keys, strata, seed=3)
    everything = split.train + split.val + split.test
    assert sorted(everything) == list(range(len(keys)))
    assert split == stratified_split(keys, strata, seed=3)
    assert split.test != stratified_split(keys, strata, seed=4).test
    assert len(split.val) == 100 and len(split.test) == 100  # overall fractions exact

    by_class = {name: Counter(strata[i] for i in getattr(split, name)) for name in ("val", "test")}
    for label, n in Counter(strata).items():
        if n < 3:  # too small: all in train
            assert by_class["val"][label] == by_class["test"][label] == 0
        else:  # each class gets floor or ceil of its share, and keeps >= 1 in train
            for part in ("val", "test"):
                assert abs(by_class[part][label] - n * 0.1) < 1.0 + 1e-9, (label, part)
            assert by_class["val"][label] + by_class["test"][label] < n


def test_stratified_split_ignores_input_order() -> None:
    keys, strata = corpus(seed=0)
    again_keys, again_strata = corpus(seed=1)
    a = stratified_split(keys, strata, seed=5)
    b = stratified_split(again_keys, again_strata, seed=5)
    assert {keys[i] for i in a.test} == {again_keys[i] for i in b.test}
    assert {keys[i] for i in a.val} == {again_keys[i] for i in b.val}


def test_split_fractions_are_checked() -> None:
    with pytest.raises(ValueError, match="fractions"):
        stratified_split(["a"], ["x"], val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ValueError, match="length"):
        stratified_split(["a", "b"], ["x"])


def test_time_split_puts_newest_in_test_and_undated_in_train() -> None:
    start = datetime(2020, 1, 1, tzinfo=UTC)
    dates: list[datetime | None] = [start + timedelta(days=(i * 37) % 100) for i in range(100)]
    dates += [None] * 10
    keys = [f"k{i}" for i in range(len(dates))]
    split = time_split(keys, dates, val_fraction=0.1, test_fraction=0.2)
    assert len(split.test) == 20 and len(split.val) == 10 and len(split.train) == 80
    assert set(range(100, 110)) <= set(split.train)

    def newest(rows: list[int]) -> datetime:
        return max(d for i in rows if (d := dates[i]) is not None)

    def oldest(rows: list[int]) -> datetime:
        return min(d for i in rows if (d := dates[i]) is not None)

    assert newest(split.train) <= oldest(split.val) and newest(split.val) <= oldest(split.test)
    assert split.kind == "time"
