from __future__ import annotations

from datetime import timedelta

import pytest

from training.promotion import decide, parse_duration


def _metrics(domain: float, cat: float, p1: float, r5: float) -> dict[str, dict[str, float]]:
    return {
        "domain": {"accuracy": domain},
        "category": {"accuracy": cat, "precision_at_1": p1, "top5_micro_recall": r5},
    }


def test_first_model_is_promoted() -> None:
    assert decide(_metrics(0.9, 0.6, 0.7, 0.8), None, margin=0.01)["promote"] is True


def test_small_drop_within_margin_still_promotes() -> None:
    old = _metrics(0.90, 0.60, 0.70, 0.80)
    new = _metrics(0.895, 0.62, 0.71, 0.81)
    decision = decide(new, old, margin=0.01)
    assert decision["promote"] is True
    assert decision["compared"]["domain.accuracy"]["delta"] == pytest.approx(-0.005)


def test_regression_beyond_margin_blocks_and_says_which() -> None:
    old = _metrics(0.90, 0.60, 0.70, 0.80)
    new = _metrics(0.95, 0.55, 0.75, 0.85)
    decision = decide(new, old, margin=0.01)
    assert decision["promote"] is False
    assert "category.accuracy 0.6000 -> 0.5500" in decision["reason"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("2w", timedelta(weeks=2)),
        ("1.5h", timedelta(minutes=90)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "-1d", "0s", "7y"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
