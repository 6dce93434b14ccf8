"""Small builders for stage records, shared by the stage tests."""

from __future__ import annotations

from rsft_plugin.stages.records import SampledCandidate, ScoredCandidate


def scored(prompt_id: int, answer_id: str, q: float, reward: float, similarity: float = 0.0, rating: float = 0.5,
           draw: int = 0, topic: str | None = None) -> ScoredCandidate:
    candidate = SampledCandidate(prompt_id, draw, answer_id, f"text of {answer_id}", answer_id, topic or answer_id, q,
                                 0.5, "v0001")
    return ScoredCandidate(candidate, similarity, 0.0, 0.0, rating, reward)
