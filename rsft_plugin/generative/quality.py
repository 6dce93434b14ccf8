"""What the gate and `rsft eval` measure for written replies, as plain functions over numbers (no model here).

On held-out golden questions a writer is judged on three things at once:
    topic-correct  the written reply's nearest bank answer (fixed MiniLM) has the labelled topic
    similarity     cosine (fixed MiniLM, clipped to [0, 1]) between the reply and the labelled topic's answer
    violations     share of replies that state a fact their grounding does not (faithfulness.py)
A candidate may replace the live writer only when it is not worse on any of the three and better on at least one
(violations: lower is better) — judged with paired tests on the per-question outcomes (stages/gate_written.py).

All three judge what the writer *wrote*, also when serving replaced it by the top grounding answer (a reply off its
grounding's topic, unfaithful, or cut): judging the served text would reward a writer for failing, since its
fallbacks are bank answers. What the customer was served is kept beside it (`served_topic_correct`,
`served_similarity`); with nothing written (an error, a question below `model.min_score`) the two are the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WrittenOutcome:
    """One written reply to one labelled question, judged as the gate judges it."""

    topic_right: bool  # the reply's nearest bank answer has the labelled topic
    similarity: float  # to the labelled topic's answer, clipped to [0, 1]
    faithful: bool  # states no fact its grounding does not (what the writer wrote, also when the guard replaced it)
    fallback: bool  # the grounding answer was served instead (timeout, error, truncation, unfaithful, off topic)
    served_topic_right: bool | None = None  # the same for what was served; None: the written reply was served
    served_similarity: float | None = None

    @property
    def served(self) -> tuple[bool, float]:
        """(topic right, similarity) of what the customer was served."""
        return (self.topic_right if self.served_topic_right is None else self.served_topic_right,
                self.similarity if self.served_similarity is None else self.served_similarity)


@dataclass(frozen=True)
class WriterQuality:
    n: int
    topic_correct: float  # share of replies whose nearest answer has the labelled topic
    similarity: float  # mean similarity to the labelled answer, in [0, 1]
    violations: float  # share of replies with a faithfulness violation
    fallbacks: float  # share of replies that were the grounding answer (timeout, error, truncation, off topic)
    served_topic_correct: float | None = None  # topic-correct of what customers were served (None: as written)
    served_similarity: float | None = None

    def to_dict(self) -> dict[str, float]:
        served = {"served_topic_correct": self.topic_correct if self.served_topic_correct is None
                  else self.served_topic_correct,
                  "served_similarity": self.similarity if self.served_similarity is None else self.served_similarity}
        return {"n": self.n, "topic_correct": round(self.topic_correct, 4), "similarity": round(self.similarity, 4),
                "violations": round(self.violations, 4), "fallbacks": round(self.fallbacks, 4),
                **{k: round(v, 4) for k, v in served.items()}}


def writer_quality(reply_topics: Sequence[str], labelled_topics: Sequence[str], similarities: Sequence[float],
                   faithful: Sequence[bool], fallback: Sequence[bool]) -> WriterQuality:
    """Aggregate per-reply judgements (aligned sequences, one entry per held-out question)."""
    n = len(labelled_topics)
    if not (len(reply_topics) == len(similarities) == len(faithful) == len(fallback) == n):
        raise ValueError("writer_quality needs one entry per question in every sequence")
    if n == 0:
        return WriterQuality(0, 0.0, 0.0, 0.0, 0.0)
    return WriterQuality(
        n=n,
        topic_correct=float(np.mean([a == b for a, b in zip(reply_topics, labelled_topics, strict=True)])),
        similarity=float(np.mean(np.clip(np.asarray(similarities, dtype=np.float64), 0.0, 1.0))),
        violations=float(np.mean([not f for f in faithful])),
        fallbacks=float(np.mean(fallback)),
    )


def quality_of(outcomes: Sequence[WrittenOutcome]) -> WriterQuality:
    """The three means (and the fallback share) of per-question outcomes."""
    if not outcomes:
        return WriterQuality(0, 0.0, 0.0, 0.0, 0.0)
    return WriterQuality(
        n=len(outcomes),
        topic_correct=float(np.mean([o.topic_right for o in outcomes])),
        similarity=float(np.mean([o.similarity for o in outcomes])),
        violations=float(np.mean([not o.faithful for o in outcomes])),
        fallbacks=float(np.mean([o.fallback for o in outcomes])),
        served_topic_correct=float(np.mean([o.served[0] for o in outcomes])),
        served_similarity=float(np.mean([o.served[1] for o in outcomes])),
    )
