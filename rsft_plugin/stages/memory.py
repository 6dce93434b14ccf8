"""Stage 5b — what the fine-tuned copy remembers: the accepted examples of every recorded round, rebuilt each round.

The retrieval kind keeps accepted (question, answer) pairs beside its weights (models/memory.py). They are read
back from the log's `training_examples` (this round's rows are already written by the reject stage), so what a
customer `rsft forget` removed, or a round the retention cleared, is gone from the next version's memory. One
example per question text: the newest round's judgement wins (a later round saw more ratings), and within it the
highest reward. The newest `limit` examples are kept, so the log is read one round at a time, newest first, and
no further than needed for `limit` questions. Kept-out gate questions are never sampled, so they are never
remembered, and the gate still checks the candidate on questions it has not seen.
"""

from __future__ import annotations

from ..log import RoundLog, TrainingExample
from ..models.memory import Remembered

_EVERY_ROUND = 1_000_000  # rounds() wants a limit; a round record is one small row


def read_remembered(log: RoundLog, limit: int) -> list[Remembered]:
    """`remembered_examples` over the log's accepted rows, reading rounds newest first only until `limit`
    questions are held: an older round can neither replace a newer judgement nor enter the newest `limit`."""
    accepted: list[TrainingExample] = []
    questions: set[str] = set()
    for record in log.rounds(limit=_EVERY_ROUND):
        if len(questions) >= limit:
            break
        rows = log.training_examples(record.id)
        accepted.extend(rows)
        questions.update(e.prompt for e in rows if _rememberable(e))
    return remembered_examples(accepted, limit)


def remembered_examples(accepted: list[TrainingExample], limit: int) -> list[Remembered]:
    """The examples a new version remembers, newest round first, at most `limit`."""
    best: dict[str, TrainingExample] = {}
    for example in accepted:
        if not _rememberable(example):
            continue
        held = best.get(example.prompt)
        if held is None or _rank(example) > _rank(held):
            best[example.prompt] = example
    newest = sorted(best.values(), key=lambda e: (-e.round_id, e.prompt))[:limit]
    return [Remembered(e.prompt, e.candidate_key, tuple(e.turn_ids), e.round_id) for e in newest]


def _rank(example: TrainingExample) -> tuple[int, float, float, str]:
    return example.round_id, example.reward, example.q, example.candidate_key or ""


def _rememberable(example: TrainingExample) -> bool:
    """False for a prompt whose turns were all forgotten, a row without a key, or a written reply (a generative
    round's): a memory holds (question, bank answer) pairs, and a written reply's grounding only had to be near."""
    return bool(example.prompt and example.candidate_key and example.turn_ids
                and example.candidate_key == example.answer_id)
