"""The judge: the fixed yardstick written replies are measured with (the pretrained MiniLM over the bank).

A reply's *topic* is its nearest bank answer under the judge's encoder; the gate and `rsft eval` compare it with the
labelled topic, with the reply's similarity to the labelled answer and its faithfulness (quality.py). The judge is
never tuned, so a round that tunes the retriever cannot move what live and candidate are measured with.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..answer_bank import Answer
from ..golden import GoldenQuestion
from .answers import WrittenAnswer
from .faithfulness import check_faithfulness
from .quality import WrittenOutcome


def nearest_of(judge: Any, embedded: Any) -> list[tuple[Answer, float]]:
    """The nearest bank answer of each of the judge's embeddings (N, d), with the cosine."""
    cosines = (embedded @ judge.answer_embeddings.T).cpu().numpy()  # (N, A)
    best = np.argmax(cosines, axis=1)
    return [(judge.bank.answers[i], float(cosines[row, i])) for row, i in enumerate(best)]


def outcomes_of(judge: Any, answered: list[WrittenAnswer], questions: list[GoldenQuestion]) -> list[WrittenOutcome]:
    """Per reply to a labelled question (aligned): is the written reply's topic the labelled one, its similarity to
    the labelled answer, is it faithful, was it a fallback — and the same of what was served (quality.py says why
    both)."""
    if not answered:
        return []
    bank = judge.bank
    by_topic = {a.topic: i for i, a in enumerate(bank.answers)}
    labelled = judge.answer_embeddings[[by_topic[q.topic] for q in questions]]  # (N, d)
    n = len(answered)
    embedded = judge.encode([a.judged_text for a in answered] + [a.text for a in answered])  # (2N, d)
    similarities = np.clip((embedded[:n] * labelled).sum(dim=1).cpu().numpy(), 0.0, 1.0)
    served_similarities = np.clip((embedded[n:] * labelled).sum(dim=1).cpu().numpy(), 0.0, 1.0)
    return [WrittenOutcome(
        topic_right=nearest.topic == q.topic, similarity=float(similarity), fallback=a.fallback,
        faithful=a.reason != "unfaithful" and (not a.written or check_faithfulness(
            a.written, [bank.get(i).text for i in a.grounding_ids]).faithful),
        served_topic_right=a.topic == q.topic, served_similarity=float(served))
        for a, q, similarity, served, (nearest, _cosine) in zip(answered, questions, similarities,
                                                                served_similarities, nearest_of(judge, embedded[:n]),
                                                                strict=True)]
