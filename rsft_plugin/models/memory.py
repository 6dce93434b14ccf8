"""The retrieval kind's example memory: the questions it was taught with, remembered next to the weights.

Fine-tuning moves the encoder towards the accepted (question, answer) pairs and then forgets the pairs. Keeping
them helps where many customers word a question alike. With a memory, an answer's score is

    cos(query, answer text) + weight * max(0, nearest - threshold)

where `nearest` is the highest cosine between the query and a remembered question of that answer (no remembered
question: no bonus). Only a near-duplicate of a remembered question raises an answer. An earlier rule blended
`(1 - weight) * cos + weight * nearest` for every answer with something remembered; because question-to-question
cosines run higher than question-to-answer ones, that lifted the few answers that had examples above all others
and cost 2-6 points on the golden set (docs/benchmarks.md, "Remembering accepted examples"). A score can exceed 1
by at most weight * (1 - threshold); the policy softmax(score / temperature), `model.min_score` and every consumer
of `cosines` keep working.

With `centroid` c > 0 each answer with something remembered is first moved towards the questions it was taught
with — a prototype, as few-shot classifiers keep one per class:

    prototype(a) = normalise((1 - s) * answer text embedding + s * normalise(sum of a's remembered questions))
    s = c * n / (n + k)     (n: a's remembered questions; k: `centroid_prior`, 0 = every answer moves c)

and `cos(query, prototype(a))` replaces the cosine to its text (answers with nothing remembered keep their text's).
The mean of many customers' wordings sits where they cluster, which one answer text cannot; the nearest question
alone follows one wording. Moving only part of the way keeps the text's meaning in the vector, so a few remembered
questions cannot carry an answer far (docs/benchmarks.md, "Prototypes"); with k > 0 the answer text also counts
like k questions of its own, so an answer taught by one or two customers, who may have rated carelessly, moves
little and one taught by many nearly c (with the whole c, 8 of 90 measured rounds at 20 and 40 % wrong ratings
came out worse on the truth set and the gate promoted 4; with k 4, 2 of 135 at 0 / 20 / 40 %, and the gate
refused both). A prototype is a unit vector: its score is still a cosine, and it can also lower an answer for a
query unlike its customers' questions. It only ranks: the score an answer is served with — what
`model.min_score` compares and the log records — stays its text's cosine (plus the near-duplicate bonus), because
question-to-question cosines run higher and out-of-scope messages would clear the threshold more often (a memory
of the golden questions at c = 0.3 lets through 9 points more of data/out_of_scope.csv at 0.25).

What a version keeps (memory.pt, hashed in version.json): the remembered questions' embeddings under the version's
own encoder, their answer ids and the turn ids they came from — never the question texts. A round rebuilds the
memory from the log (stages/memory.py), so a customer `rsft forget` removed is gone from the next version's memory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ModelLoadError

if TYPE_CHECKING:
    from ..config import ModelConfig

MEMORY_FILE = "memory.pt"
DEFAULT_THRESHOLD = 0.6  # model.memory_threshold's default: a remembered question counts from this cosine up


@dataclass(frozen=True)
class MemoryRule:
    """How remembered questions score answers: the near-duplicate bonus (`weight` above `threshold`) and the
    prototypes (`centroid`, shrunk by `centroid_prior`). The `model.memory_*` keys; a version keeps the rule it was
    checked with (version.json `memory`)."""

    weight: float
    threshold: float = DEFAULT_THRESHOLD
    centroid: float = 0.0
    centroid_prior: float = 0.0

    @classmethod
    def configured(cls, settings: ModelConfig) -> MemoryRule:
        return cls(settings.memory_weight, settings.memory_threshold, settings.memory_centroid,
                   settings.memory_centroid_prior)

    @classmethod
    def described(cls, summary: dict[str, Any]) -> MemoryRule:
        """The rule a version.json `memory` summary records. One saved before the near-duplicate rule has no
        threshold and scores with the default; one saved before prototypes has no centroid and ranks by its answer
        texts; one saved before the prior moves every answer the whole centroid."""
        return cls(float(summary.get("weight", 0.0)), float(summary.get("threshold", DEFAULT_THRESHOLD)),
                   float(summary.get("centroid", 0.0)), float(summary.get("centroid_prior", 0.0)))

    def describe(self) -> dict[str, float]:
        return asdict(self)

    def shares(self, counts: torch.Tensor) -> torch.Tensor:
        """How far an answer with `counts` remembered questions moves towards them: centroid * n / (n + prior)."""
        counts = counts.to(torch.float64)
        return self.centroid * counts / (counts + self.centroid_prior).clamp(min=1e-12)


@dataclass(frozen=True)
class Remembered:
    """One example to remember: a (redacted) prompt, the answer id accepted for it and where it came from."""

    question: str
    answer_id: str
    turn_ids: tuple[str, ...]
    round_id: int


class ExampleMemory:
    """Remembered question embeddings (M, d) with their answer ids; scores queries against one answer bank."""

    def __init__(self, embeddings: torch.Tensor, answer_ids: list[str], turn_ids: list[list[str]],
                 rule: MemoryRule) -> None:
        if len(embeddings) != len(answer_ids) or len(answer_ids) != len(turn_ids):
            raise ValueError("a memory needs one answer id and one turn-id list per embedding")
        self.embeddings, self.answer_ids, self.turn_ids, self.rule = embeddings, answer_ids, turn_ids, rule
        self._index_cache: tuple[tuple[str, ...], torch.Tensor] | None = None
        self._prototype_cache: tuple[torch.Tensor, torch.Tensor] | None = None  # (answer embeddings, prototypes)

    @classmethod
    def empty(cls) -> ExampleMemory:
        return cls(torch.zeros((0, 0)), [], [], MemoryRule(0.0))

    def __len__(self) -> int:
        return len(self.answer_ids)

    def scores(self, queries: torch.Tensor, answers: torch.Tensor,
               bank_ids: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ranked, served), each (Q, A), from the queries' embeddings (Q, d) and the bank's (A, d): what ranks the
        answers (prototypes with `centroid`), and what an answer is served with (its text's cosine; what
        `model.min_score` reads). Both carry the near-duplicate bonus; without prototypes they are one tensor."""
        text_cosines = queries @ answers.T
        index = self._bank_index(bank_ids)
        if not len(self) or not bool((index >= 0).any()):
            return text_cosines, text_cosines
        bonus = self._bonus(queries, index, text_cosines) if self.rule.weight > 0 else torch.zeros_like(text_cosines)
        served = text_cosines + bonus
        if self.rule.centroid == 0:
            return served, served
        return queries @ self._prototypes(answers, index).T + bonus, served

    def _bonus(self, queries: torch.Tensor, index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """(Q, A): weight * max(0, nearest - threshold) per answer; 0 for an answer with nothing remembered."""
        known = index >= 0
        similarities = queries @ self.embeddings[known].T  # (Q, M')
        nearest = torch.full_like(like, -torch.inf).scatter_reduce(
            1, index[known].expand(len(queries), -1), similarities.to(like.dtype), reduce="amax")
        return self.rule.weight * (nearest - self.rule.threshold).clamp(min=0.0)  # -inf (nothing remembered) -> 0

    def _prototypes(self, answers: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """(A, d): each answer's embedding moved its share of the way to its remembered questions' mean direction,
        normalised; answers with nothing remembered keep their own. Once per set of answer embeddings."""
        if self._prototype_cache is not None and self._prototype_cache[0] is answers:
            return self._prototype_cache[1]
        known = index >= 0
        sums = torch.zeros_like(answers).index_add_(0, index[known], self.embeddings[known].to(answers.dtype))
        norms = sums.norm(dim=1, keepdim=True)
        taught = norms.squeeze(1) > 0
        share = self.rule.shares(torch.bincount(index[known], minlength=len(answers))).to(answers.dtype).unsqueeze(1)
        mixed = answers.clone()
        mixed[taught] = (1 - share[taught]) * answers[taught] + share[taught] * sums[taught] / norms[taught]
        prototypes = torch.nn.functional.normalize(mixed, dim=1)
        prototypes[~taught] = answers[~taught]
        self._prototype_cache = (answers, prototypes)
        return prototypes

    def _bank_index(self, bank_ids: tuple[str, ...]) -> torch.Tensor:
        """Each remembered answer's position in the bank; -1 for an answer the bank no longer has."""
        if self._index_cache is None or self._index_cache[0] != bank_ids:
            position = {answer_id: i for i, answer_id in enumerate(bank_ids)}
            index = torch.tensor([position.get(a, -1) for a in self.answer_ids], dtype=torch.long)
            self._index_cache = (bank_ids, index)
        return self._index_cache[1]

    def save(self, directory: Path) -> Path:
        path = directory / MEMORY_FILE
        torch.save({"embeddings": self.embeddings.detach().to(torch.float32).contiguous(),
                    "answer_ids": list(self.answer_ids), "turn_ids": [list(t) for t in self.turn_ids]}, path)
        return path

    @classmethod
    def load(cls, directory: Path, rule: MemoryRule) -> ExampleMemory:
        """Raises ModelLoadError when the file is missing or malformed (its hash is checked by the caller)."""
        path = directory / MEMORY_FILE
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            return cls(saved["embeddings"], [str(a) for a in saved["answer_ids"]],
                       [[str(t) for t in ids] for ids in saved["turn_ids"]], rule)
        except (OSError, RuntimeError, KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{directory}: cannot read {MEMORY_FILE}: {exc}") from exc
