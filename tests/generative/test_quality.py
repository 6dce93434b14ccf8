"""The writer's gate measures: pure functions over numbers (the promotion rule: tests/test_gate_written.py)."""

from __future__ import annotations

import pytest

from rsft_plugin.generative.quality import WrittenOutcome, quality_of, writer_quality


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


def test_quality_of_per_question_outcomes_gives_the_three_means() -> None:
    outcomes = [WrittenOutcome(True, 0.9, True, False), WrittenOutcome(False, 0.5, False, False),
                WrittenOutcome(True, 0.7, True, True), WrittenOutcome(True, 0.3, True, False)]
    q = quality_of(outcomes)
    assert (q.n, q.topic_correct, q.violations, q.fallbacks) == (4, 0.75, 0.25, 0.25)
    assert q.similarity == pytest.approx(0.6)
    assert quality_of([]).n == 0
