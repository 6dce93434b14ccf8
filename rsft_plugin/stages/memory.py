"""Stage 5b — what the fine-tuned copy remembers: the accepted examples of every recorded round, rebuilt each round.

The retrieval kind keeps accepted (question, answer) pairs beside its weights (models/memory.py). They are read
back from the log's `training_examples` (this round's rows are already written by the reject stage), so what a
customer `rsft forget` removed, or a round the retention cleared, is gone from the next version's memory. One
example per question text: the newest round's judgement wins (a later round saw more ratings), and within it the
highest reward. The newest `limit` examples are kept. Kept-out gate questions are never sampled, so they are never
remembered, and the gate still checks the candidate on questions it has not seen.
"""

from __future__ import annotations

from ..log import TrainingExample
from ..models.memory import Remembered


def remembered_examples(accepted: list[TrainingExample], limit: int) -> list[Remembered]:
    """The examples a new version remembers, newest round first, at most `limit`."""
    best: dict[str, TrainingExample] = {}
    for example in accepted:
        if not example.prompt or not example.candidate_key or not example.turn_ids:
            continue  # a prompt whose turns were all forgotten, or a row without a key
        held = best.get(example.prompt)
        if held is None or _rank(example) > _rank(held):
            best[example.prompt] = example
    newest = sorted(best.values(), key=lambda e: (-e.round_id, e.prompt))[:limit]
    return [Remembered(e.prompt, e.candidate_key, tuple(e.turn_ids), e.round_id) for e in newest]


def _rank(example: TrainingExample) -> tuple[int, float, float, str]:
    return example.round_id, example.reward, example.q, example.candidate_key or ""
