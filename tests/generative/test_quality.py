"""The writer's gate measures and the promotion rule: pure functions over numbers."""

from __future__ import annotations

import pytest

from rsft_plugin.generative.quality import WriterQuality, compare_quality, writer_quality


def test_writer_quality_aggregates_per_reply_judgements() -> None:
    q = writer_quality(["a", "b", "c", "a"], ["a", "b", "b", "b"], [0.9, 1.2, -0.1, 0.4],
                       [True, False, True, True], [False, False, True, False])
    assert q.n == 4
    assert q.topic_correct == pytest.approx(0.5)
    assert q.similarity == pytest.approx((0.9 + 1.0 + 0.0 + 0.4) / 4)  # clipped to [0, 1]
    assert q.violations == pytest.approx(0.25) and q.fallbacks == pytest.approx(0.25)
    assert q.to_dict()["topic_correct"] == 0.5


def test_misaligned_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="one entry per question"):
        writer_quality(["a"], ["a", "b"], [1.0], [True], [False])
    assert writer_quality([], [], [], [], []).n == 0


LIVE = WriterQuality(100, 0.80, 0.60, 0.05, 0.0)


@pytest.mark.parametrize(("candidate", "promote", "says"), [
    (WriterQuality(100, 0.82, 0.60, 0.05, 0.0), True, "topic-correct better"),
    (WriterQuality(100, 0.80, 0.70, 0.05, 0.0), True, "similarity better"),
    (WriterQuality(100, 0.80, 0.60, 0.01, 0.0), True, "faithfulness violations better"),
    (WriterQuality(100, 0.90, 0.70, 0.06, 0.0), False, "faithfulness violations worse"),
    (WriterQuality(100, 0.79, 0.90, 0.00, 0.0), False, "topic-correct worse"),
    (WriterQuality(100, 0.80, 0.60, 0.05, 0.0), False, "no measure improved"),
])
def test_promote_only_when_not_worse_on_any_and_better_on_one(candidate, promote, says) -> None:
    decision, reasons = compare_quality(LIVE, candidate, min_improvement=0.01)
    assert decision is promote
    assert any(says in r for r in reasons), reasons


def test_a_tolerance_forgives_small_drops() -> None:
    candidate = WriterQuality(100, 0.79, 0.70, 0.05, 0.0)
    assert compare_quality(LIVE, candidate, 0.01, tolerance=0.02)[0]
    assert not compare_quality(LIVE, candidate, 0.01, tolerance=0.0)[0]
