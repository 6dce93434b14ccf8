"""What every kind of response model shares: the version record, the policy interface and its records.

A *kind* (retrieval today, a generative model later) is one class implementing `ResponsePolicy`; `kinds.py` maps
the kind's name, as written in version.json, to that class. Nothing here imports torch: the web server reads
versions through this module and must stay light.

A candidate reply is identified by a stable string `key`: for retrieval the answer id, for a generated reply a
hash of its text. Stages, the log and provenance work on keys and reply texts, never on positions in a bank.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from ..answer_bank import ANSWERS_FILE, Answer, AnswerBank  # noqa: F401 (ANSWERS_FILE: re-exported for the kinds)
from ..errors import ModelLoadError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

    from ..config import FinetuneConfig, ModelConfig
    from .memory import MemoryRule

    # sample_many's randomness: one generator shared by all queries, one per query, or None (unseeded)
    Rngs = np.random.Generator | Sequence[np.random.Generator] | None

VERSION_FILE = "version.json"
FORMAT = 1
DEFAULT_KIND = "retrieval"

# progress(stage, fraction in [0, 1], message)
Progress = Callable[[str, float, str], None]


def no_progress(stage: str, fraction: float, message: str) -> None:
    """The default progress sink: ignore."""


def generators_for(rng: Rngs, n: int) -> list[np.random.Generator]:
    """One generator per query: the given list (a round seeds each from its query's text), or `rng` shared by all.

    Raises:
        ValueError: a list of generators whose length is not `n`.
    """
    import numpy as np

    if rng is None or isinstance(rng, np.random.Generator):
        return [rng or np.random.default_rng()] * n
    generators = list(rng)
    if len(generators) != n:
        raise ValueError(f"{len(generators)} random generators for {n} queries")
    return generators


@dataclass(frozen=True)
class Ranked:
    """One alternative's place in the policy for a query."""

    key: str  # stable candidate key (retrieval: the answer id)
    answer_id: str | None  # the bank answer it is (retrieval) or is grounded in; None when it has none
    topic: str
    cosine: float  # the model's score for (query, reply)
    probability: float


@dataclass(frozen=True)
class Answered:
    """The model's answer to one query: the chosen reply plus the alternatives behind it."""

    key: str  # stable key of the reply (retrieval: the answer id)
    text: str  # the reply text, before placeholders are rendered
    topic: str
    answer: Answer | None  # the bank answer it is (retrieval) or is grounded in; None when it has none
    score: float  # the model's score of the chosen reply (retrieval: cosine)
    probability: float  # its policy probability
    top_k: tuple[Ranked, ...]

    @property
    def answer_id(self) -> str | None:
        return self.answer.id if self.answer else None

    @property
    def writing(self) -> dict[str, Any] | None:
        """How the reply was written, for the turn log's `writing` column (None: a bank answer, nothing written)."""
        return None


@dataclass(frozen=True)
class Candidate:
    """A sampled reply with its policy probability q(reply | prompt) at the sampling temperature."""

    key: str
    text: str
    topic: str
    answer: Answer | None  # the bank answer it is (retrieval) or is grounded in
    probability: float
    cosine: float

    @property
    def answer_id(self) -> str | None:
        return self.answer.id if self.answer else None

    @property
    def violations(self) -> tuple[str, ...]:
        """Facts the reply states that its grounding does not ("kind: value"); a bank answer states none."""
        return ()


@dataclass(frozen=True)
class TrainingPair:
    """One accepted (prompt, reply) pair; the same prompt's rejected candidates are its hard negatives."""

    prompt: str
    target_key: str  # the accepted candidate's key
    negative_keys: tuple[str, ...] = ()  # rejected candidates of the same prompt


@dataclass
class FinetuneResult:
    model: Any  # a ResponsePolicy: a trained copy of the live one
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    train_pairs: int
    val_pairs: int
    examples_per_second: float
    history: list[dict[str, float]] = field(default_factory=list)
    precision: str = "float32"  # of the training passes (the generative kind's LoRA may run in bfloat16)
    threads: int = 0  # torch threads the training passes ran with (0: not recorded)
    refit_epochs: int = 0  # epochs of the second pass on every pair, validation ones too (0: none; finetune.refit)


@dataclass(frozen=True)
class VersionInfo:
    """What version.json holds: enough to rebuild the version and to explain where it came from."""

    name: str
    created_at: str
    created_by: str
    rsft_version: str
    base_encoder: dict[str, str]
    temperature: float
    trainable_layers: int
    answer_bank_hash: str
    n_answers: int
    weights_sha256: str = ""
    parent: str | None = None
    round_id: int | None = None
    eval: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    format: int = FORMAT
    kind: str = DEFAULT_KIND  # which class loads it (models/kinds.py); versions written before kinds are retrieval
    memory: dict[str, Any] = field(default_factory=dict)  # retrieval: remembered examples, weight, memory.pt hash


def read_version_info(directory: str | Path) -> VersionInfo:
    """Parse a version's version.json.

    Raises:
        ModelLoadError: missing, unreadable or incomplete.
    """
    path = Path(directory) / VERSION_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return VersionInfo(**raw)
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{directory} is not a model version (no {VERSION_FILE})") from exc
    except (OSError, ValueError, TypeError) as exc:
        raise ModelLoadError(f"{path} is unreadable or incomplete: {exc}") from exc


def write_version_info(directory: str | Path, info: VersionInfo) -> None:
    """Write a version's version.json durably (flushed to disk): a kind's `save` writes it last, after its parts."""
    with (Path(directory) / VERSION_FILE).open("w", encoding="utf-8") as handle:
        json.dump(asdict(info), handle, indent=2, ensure_ascii=False)
        handle.flush()
        os.fsync(handle.fileno())


@runtime_checkable
class ResponsePolicy(Protocol):
    """A response model: one instance is one immutable version in memory.

    What serving (answer), a round (sample, finetune, gate), `rsft eval` and the registry (describe, save, load)
    need. A new kind implements this and adds one line to `kinds.KINDS`.
    """

    kind: ClassVar[str]
    info: VersionInfo | None
    bank: AnswerBank  # the answer bank it answers from or is grounded in
    config: ModelConfig

    @property
    def name(self) -> str:
        """The version name, or "unsaved"."""

    def answer(self, query: str) -> Answered:
        """The best reply for one query."""

    def answer_many(self, queries: list[str]) -> list[Answered]:
        """Best replies for many queries, batched; what evaluation and the gate use."""

    def sample_many(self, queries: list[str], k: int, temperature: float | None = None,
                    rng: Rngs = None, replace: bool = False) -> list[list[Candidate]]:
        """k candidates per query, each with its proposal probability q(candidate | query) at `temperature`.

        `rng`: one generator for all queries, one per query (a round's: seeded by each query's text), or None.
        """

    def finetune(self, pairs: list[TrainingPair], config: FinetuneConfig, progress: Progress = no_progress,
                 show_bar: bool = True) -> FinetuneResult:
        """Train a copy on accepted pairs; this version is never modified."""

    def describe(self, name: str, parent: str | None = None, round_id: int | None = None,
                 eval_numbers: dict[str, Any] | None = None, notes: str = "") -> VersionInfo:
        """The VersionInfo this model would be saved with under `name`."""

    def save(self, directory: str | Path, info: VersionInfo) -> VersionInfo:
        """Write the version into an empty or new directory, version.json last; returns the info written."""

    @classmethod
    def load(cls, directory: str | Path, config: ModelConfig | None = None) -> ResponsePolicy:
        """Load a saved version. Raises ModelLoadError."""

    @classmethod
    def pretrained(cls, bank: AnswerBank, config: ModelConfig,
                   models_dir: str | Path | None = None) -> ResponsePolicy:
        """The untuned model over `bank` (what `rsft init-model` saves); `models_dir` is where the versions will live
        (a kind may keep converted base weights beside them; optional: `pretrained_policy` passes it only to a kind
        whose `pretrained` names it)."""

    def with_bank(self, bank: AnswerBank) -> ResponsePolicy:
        """The same weights over another answer bank (an edited bank needs no retraining)."""


@runtime_checkable
class RemembersExamples(Protocol):
    """A kind that can keep accepted examples beside its weights (the retrieval kind, models/memory.py; the
    generative kind through its retriever)."""

    def remember(self, examples: list[Any], rule: MemoryRule) -> ResponsePolicy:
        """A copy of this version that remembers `examples` (models.memory.Remembered) and scores by `rule`."""

    def without_memory(self) -> ResponsePolicy:
        """The same version, under the same name, scoring without its remembered examples."""


@runtime_checkable
class ScoresNamedAnswers(Protocol):
    """A kind whose candidates are bank answers, so that a round can add the answers customers named (a 👍 or a
    pick) when the policy did not draw them (stages/sample.py; the retrieval kind)."""

    def named_candidates(self, queries: list[str], keys: list[list[str]],
                         temperature: float | None = None) -> list[list[Candidate]]:
        """Per query, its `keys` (bank answer ids; ones the bank lacks are left out) as candidates, each with its
        proposal probability q(answer | query) at `temperature` and its cosine, as `sample_many` gives them."""
