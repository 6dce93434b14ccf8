"""Typed records passed from one stage of a round to the next."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import RsftError
from ..models.base import FinetuneResult, Progress, TrainingPair, no_progress
from .paired import PairedCounts

if TYPE_CHECKING:
    import torch

    from ..log import Turn

__all__ = ["CheckOutcome", "Decision", "FinetuneResult", "GateEvidence", "GateResult", "PairedCounts", "Progress",
           "Prompt", "PromptSet", "RejectOutcome", "RoundStopped", "SampledCandidate", "ScoredCandidate",
           "TrainingPair", "WrittenEvidence", "no_progress", "turn_key"]


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
    named: bool = False  # not drawn: an answer the prompt's customers named, added by sample.named

    @property
    def written(self) -> bool:
        """A reply the writer wrote, not a bank answer (a generative round draws both: stages/rules.py)."""
        return self.key != self.answer_id


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
class WrittenEvidence:
    """The generative kind's gate: both writers' replies to the same held-out questions, as paired counts per
    measure (stages/gate_written.py), and each writer's means (generative/quality.WriterQuality.to_dict())."""

    topic: PairedCounts  # the reply's nearest bank answer has the labelled topic
    similarity: PairedCounts  # sign counts: wins = the candidate's reply is closer to the labelled answer
    faithful: PairedCounts  # "right" = the reply states no fact its grounding does not
    live: dict[str, float]  # n, topic_correct, similarity, violations, fallbacks
    candidate: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"topic": self.topic.to_dict(), "similarity": self.similarity.to_dict(),
                "faithful": self.faithful.to_dict(), "live": dict(self.live), "candidate": dict(self.candidate)}

    @classmethod
    def from_dict(cls, numbers: dict[str, Any]) -> WrittenEvidence:
        return cls(*(PairedCounts.from_dict(numbers[k]) for k in ("topic", "similarity", "faithful")),
                   dict(numbers["live"]), dict(numbers["candidate"]))


@dataclass(frozen=True)
class GateEvidence:
    """What the gate's tests are computed from: paired counts of live vs candidate, enough to recompute a verdict
    under another GateConfig (the benchmark does) without the models."""

    heldout: PairedCounts  # top-1 topic right on the held-out questions (written replies: topic-correct)
    topics: dict[str, PairedCounts]  # the same, per topic
    rated: PairedCounts | None  # agreement with the kept-out rated turns; None when there are none
    written: WrittenEvidence | None = None  # the generative kind: the three measures of written replies
    rating_noise_rate: float | None = None  # the round's estimated rate of wrong ratings; None: no ratings to tell

    def to_dict(self) -> dict[str, Any]:
        numbers = {"heldout": self.heldout.to_dict(),
                   "topics": {t: c.to_dict() for t, c in sorted(self.topics.items())},
                   "rated": self.rated.to_dict() if self.rated else None}
        if self.written is not None:
            numbers["written"] = self.written.to_dict()
        if self.rating_noise_rate is not None:
            numbers["rating_noise_rate"] = self.rating_noise_rate
        return numbers

    @classmethod
    def from_dict(cls, numbers: dict[str, Any]) -> GateEvidence:
        rated, written = numbers.get("rated"), numbers.get("written")
        return cls(PairedCounts.from_dict(numbers["heldout"]),
                   {t: PairedCounts.from_dict(c) for t, c in numbers["topics"].items()},
                   PairedCounts.from_dict(rated) if rated else None,
                   WrittenEvidence.from_dict(written) if written else None,
                   numbers.get("rating_noise_rate"))


@dataclass(frozen=True)
class CheckOutcome:
    """One paired test of the gate, with the numbers a refusal quotes."""

    check: str  # "heldout" | "topic" | "rated" | "written_worse" | "written_better"
    subject: str  # what was compared: "held-out accuracy", a topic's name, "kept-out ratings", a written measure
    counts: PairedCounts
    p_value: float  # one-sided exact binomial p on the discordant items (a topic's: before Holm)
    level: float
    passed: bool
    adjusted_p: float | None = None  # topic: Holm-adjusted across the topics tested
    bound: float | None = None  # test lower_bound: the gain's lower confidence bound
    margin: float | None = None
    noisy_rate: float | None = None  # held-out, lower_bound: the estimated rate that made `margin` the noisy one
    live_value: float | None = None  # written measures: the live writer's mean (topic-correct, similarity, violations)
    candidate_value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        numbers = {"check": self.check, "subject": self.subject, **self.counts.to_dict(),
                   "p_value": round(self.p_value, 6), "level": self.level, "passed": self.passed}
        for key in ("adjusted_p", "bound", "margin", "noisy_rate", "live_value", "candidate_value"):
            if getattr(self, key) is not None:
                numbers[key] = round(getattr(self, key), 6)
        return numbers


@dataclass(frozen=True)
class GateResult:
    promote: bool
    reason: str  # a refusal names every failed test with its numbers
    evidence: GateEvidence
    checks: list[CheckOutcome]  # held-out first, then every topic tested, then the kept-out ratings

    @property
    def live_accuracy(self) -> float:
        return self.evidence.heldout.live_accuracy

    @property
    def candidate_accuracy(self) -> float:
        return self.evidence.heldout.candidate_accuracy

    @property
    def per_topic(self) -> dict[str, dict[str, float]]:
        """topic -> {"live": accuracy, "candidate": accuracy}"""
        return {t: {"live": c.live_accuracy, "candidate": c.candidate_accuracy}
                for t, c in sorted(self.evidence.topics.items())}

    @property
    def rated_n(self) -> int:
        return self.evidence.rated.n if self.evidence.rated else 0

    @property
    def rated_live(self) -> float | None:
        """Agreement of the live model with the kept-out rated turns."""
        return self.evidence.rated.live_accuracy if self.evidence.rated else None

    @property
    def rated_candidate(self) -> float | None:
        return self.evidence.rated.candidate_accuracy if self.evidence.rated else None

    @property
    def failed(self) -> list[CheckOutcome]:
        return [c for c in self.checks if not c.passed]
