"""What the generative kind hands back: a written answer (what serving shows and the turn log records), a sampled
candidate (a reply with log q), how a sampled reply was drawn, and the stable key of a written reply."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ..models.base import Answered, Candidate, TrainingPair

KEY_PREFIX = "gen-"


def reply_key(text: str) -> str:
    """The stable key of a written reply: the same text always has the same key."""
    return KEY_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class WrittenAnswer(Answered):
    """An Answered with what the turn log wants to know about the writing."""

    grounding_ids: tuple[str, ...] = ()
    fallback: bool = False
    reason: str = ""  # why the grounding answer was served: timeout, truncated, empty, unfaithful, off_topic, error
    written: str = ""  # what the writer wrote, also when it was not served
    prompt_tokens: int = 0
    new_tokens: int = 0
    seconds: float = 0.0

    @property
    def judged_text(self) -> str:
        """What the writer wrote as it would have been served (the gate and the topic guard judge it): the written
        reply, also when a guard replaced it; the served text when nothing was written (an error, a low score)."""
        return self.written or self.text

    @property
    def writing(self) -> dict[str, Any]:
        """What the turn log records: grounding answer ids, whether the grounding answer was served instead and
        why, token counts and the writer's own time. No text: what was written but not served could echo the
        customer's message, and the log's retention redacts only user_text and answer_text."""
        return {"grounding_ids": list(self.grounding_ids), "fallback": self.fallback, "reason": self.reason,
                "prompt_tokens": self.prompt_tokens, "new_tokens": self.new_tokens,
                "writer_ms": round(self.seconds * 1000, 1)}


@dataclass(frozen=True)
class Drawn:
    """What `finetune` needs of a reply this policy drew: its prompt and grounding."""

    question: str
    grounding: tuple[str, ...]  # texts, top first
    text: str
    grounding_ids: tuple[str, ...]


@dataclass(frozen=True)
class GeneratedCandidate(Candidate):
    """A sampled reply with log q (Candidate.probability is exp of it) and its faithfulness verdict."""

    logprob: float = 0.0
    model_logprob: float = 0.0
    grounding_ids: tuple[str, ...] = ()
    finished: bool = True
    violations: tuple[str, ...] = ()  # "kind: value" of facts the grounding does not state

    @property
    def faithful(self) -> bool:
        return not self.violations


def grounding_pairs(pairs: list[TrainingPair], drawn: dict[str, Drawn], bank_ids: set[str]) -> list[TrainingPair]:
    """The retriever's training pairs: a pair naming a bank answer trains the retriever towards that answer, and an
    accepted written reply in `drawn` (pass {} to leave them out) towards its top grounding answer; the prompt's
    rejected candidates' answers (none accepted) are the hard negatives; one pair per (prompt, answer)."""

    def grounding_of(key: str) -> str | None:
        if key in drawn:
            return drawn[key].grounding_ids[0]
        return key if key in bank_ids else None

    accepted: dict[str, set[str]] = {}
    for pair in pairs:
        target = grounding_of(pair.target_key)
        if target is not None:
            accepted.setdefault(pair.prompt, set()).add(target)
    result, seen = [], set()
    for pair in pairs:
        target = grounding_of(pair.target_key)
        if target is None or (pair.prompt, target) in seen:
            continue
        seen.add((pair.prompt, target))
        negatives = {grounding_of(k) for k in pair.negative_keys} - accepted[pair.prompt] - {None}
        result.append(TrainingPair(pair.prompt, target, tuple(sorted(negatives))))  # type: ignore[arg-type]
    return result


def writer_pairs(pairs: list[TrainingPair], retrieved: set[tuple[str, str]]) -> list[TrainingPair]:
    """The writer's training pairs: every accepted pair but the retriever's own draws of the round ((prompt, answer
    id) in `retrieved`), which teach the retriever what to find, not the writer what to write."""
    return [pair for pair in pairs if (pair.prompt, pair.target_key) not in retrieved]
