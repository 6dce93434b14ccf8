"""Typed records passed from one stage of a round to the next."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import RsftError
from ..models.base import FinetuneResult, Progress, TrainingPair, no_progress

if TYPE_CHECKING:
    import torch

    from ..log import Turn

__all__ = ["Decision", "FinetuneResult", "GateResult", "Progress", "Prompt", "PromptSet", "RejectOutcome",
           "RoundStopped", "SampledCandidate", "ScoredCandidate", "TrainingPair", "no_progress", "turn_key"]


class RoundStopped(RsftError):
    """A round ended early for a reason that is not a fault (too few prompts, too few accepted samples)."""


def turn_key(turn: Turn) -> str:
    """The candidate key of the reply a logged turn served (retrieval: its answer id; older rows have no reply_key)."""
    return turn.reply_key or turn.answer_id


@dataclass(frozen=True)
class Prompt:
    """A customer question a round learns from; near-duplicates are merged into one prompt."""

    id: int
    text: str
    turn_ids: tuple[str, ...]
    replay: bool  # all its turns are from before the last round
    gate_only: bool  # kept out of training: the gate checks the candidate on it


@dataclass(frozen=True)
class PromptSet:
    prompts: list[Prompt]
    embeddings: torch.Tensor  # (P, d), by the fixed scoring encoder, aligned with prompts

    @property
    def trainable(self) -> list[Prompt]:
        return [p for p in self.prompts if not p.gate_only]

    @property
    def gate_turn_ids(self) -> set[str]:
        return {t for p in self.prompts if p.gate_only for t in p.turn_ids}


@dataclass(frozen=True)
class SampledCandidate:
    prompt_id: int
    draw: int  # position in the prompt's draw order
    key: str  # stable candidate key (retrieval: the answer id; a generated reply: a hash of its text)
    text: str  # the candidate's reply text
    answer_id: str | None  # the bank answer it is or is grounded in; None when it has none
    topic: str  # the topic of that answer
    q: float  # q(candidate | prompt), the live policy at the sampling temperature
    cosine: float  # the live model's score for (prompt, candidate)
    sampled_by: str  # the live version that drew it
    violations: tuple[str, ...] = ()  # facts a written reply states that its grounding does not ("kind: value")


@dataclass(frozen=True)
class ScoredCandidate:
    candidate: SampledCandidate
    similarity: float  # in [0, 1]: cosine to the nearest trusted answer, 0 when there is none
    rating_up: float  # sender-capped 👍 for this answer on this prompt and its near neighbours
    rating_down: float
    rating: float  # Beta-smoothed (up + a) / (up + down + a + b)
    reward: float  # w_similarity * similarity + w_rating * rating


@dataclass(frozen=True)
class Decision:
    scored: ScoredCandidate
    accepted: bool
    accept_probability: float  # the rule's probability of accepting it (0 or 1 for deterministic rules)


@dataclass(frozen=True)
class RejectOutcome:
    rule: str
    decisions: list[Decision]
    r_max: float
    boundary: dict[str, float | str]  # what the histogram shows: thresholds, or the tilt's parameters
    unfaithful: int = 0  # candidates rejected whatever the rule said: they state facts their grounding does not

    @property
    def accepted(self) -> list[Decision]:
        return [d for d in self.decisions if d.accepted]

    @property
    def acceptance_rate(self) -> float:
        return len(self.accepted) / len(self.decisions) if self.decisions else 0.0

    def require(self, min_accepted: int) -> None:
        """Raises RoundStopped when fewer than `min_accepted` candidates were accepted: too little to train on."""
        if len(self.accepted) < min_accepted:
            raise RoundStopped(f"only {len(self.accepted)} of {len(self.decisions)} candidates were accepted by the "
                               f"{self.rule} rule; training needs at least {min_accepted} (reject.min_accepted)")

    def acceptance_by_topic(self) -> dict[str, float]:
        seen: dict[str, list[int]] = {}
        for decision in self.decisions:
            counts = seen.setdefault(decision.scored.candidate.topic, [0, 0])
            counts[0] += int(decision.accepted)
            counts[1] += 1
        return {topic: accepted / total for topic, (accepted, total) in sorted(seen.items())}


@dataclass(frozen=True)
class GateResult:
    promote: bool
    reason: str
    live_accuracy: float
    candidate_accuracy: float
    per_topic: dict[str, dict[str, float]]  # topic -> {"live": acc, "candidate": acc}
    rated_live: float | None  # agreement with kept-out rated turns
    rated_candidate: float | None
    rated_n: int
