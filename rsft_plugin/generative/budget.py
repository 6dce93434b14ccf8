"""How many new tokens a reply may take: the configured budget, or room for the whole grounding answer.

A shop's answers can be longer than `max_new_tokens`: the bank in data/answers.yml has a median of 59 tokens and 35
of its 36 answers are longer than 48. A reply cut at the budget keeps only its complete sentences, so under a fixed
48 tokens even a writer that copied its grounding word for word would lose the end of almost every answer (measured:
similarity 0.79 of the cut answer to the whole one). With `fit_grounding` the budget grows to the longest answer the
writer sees plus a little room, so a reply can say everything its grounding says; it never shrinks below
`max_new_tokens`, and the time limit still bounds how long a reply takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..config.generative import MOST_NEW_TOKENS
from .settings import WriterSettings

FIT_ROOM = 12  # tokens beyond the grounding answer: a greeting, the shop's name, a closing phrase


def reply_budget(tokenizer: Any, settings: WriterSettings, grounding: Sequence[str],
                 max_new_tokens: int | None = None) -> int:
    """The most new tokens for a reply to a question grounded on `grounding` (an explicit `max_new_tokens` wins)."""
    if max_new_tokens:
        return max_new_tokens
    if not settings.fit_grounding:
        return settings.max_new_tokens
    seen = grounding[: settings.grounding_answers]
    longest = max((len(tokenizer(" ".join(text.split()), add_special_tokens=False)["input_ids"]) for text in seen),
                  default=0)
    return max(settings.max_new_tokens, min(longest + FIT_ROOM, MOST_NEW_TOKENS))
