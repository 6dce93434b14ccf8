"""The retrieval kind of response model: a policy over the answer bank.

A bi-encoder embeds the customer's query and every answer; the policy is softmax(cosine / temperature) over the
bank. The answer embeddings are computed once when a version is loaded, never per request.

A saved version is a directory that describes itself:
    version.json   name, parent, round, base encoder, model config, answer-bank hash, weights hash, eval numbers
    weights.pt     the fine-tunable top transformer layers (the rest is the pretrained encoder, by reference)
    answers.json   the answer bank this version was built on (its hash is in version.json)
    memory.pt      the remembered examples' embeddings, answer ids and turn ids (models/memory.py), when any

A candidate's key is its answer id. This module is the `retrieval` entry of models/kinds.py; everything else
reaches it through `load_version`, `pretrained_policy` or the `ResponsePolicy` protocol.
"""

from __future__ import annotations

import copy
import getpass
import hashlib
import json
import platform
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from .. import __version__
from ..answer_bank import AnswerBank
from ..config import FinetuneConfig, ModelConfig
from ..errors import DataError, ModelLoadError
from ..faults import checkpoint
from .base import (
    ANSWERS_FILE,
    VERSION_FILE,
    Answered,
    Candidate,
    FinetuneResult,
    Progress,
    Ranked,
    TrainingPair,
    VersionInfo,
    generators_for,
    no_progress,
    read_version_info,
    write_version_info,
)
from .encoder import BASE_ENCODER, embed, load_base_encoder, shared_base_encoder, trainable_state
from .memory import MEMORY_FILE, ExampleMemory, MemoryRule, Remembered

if TYPE_CHECKING:
    from .base import Rngs

WEIGHTS_FILE = "weights.pt"


class ResponseModel:
    """Answer, sample, fine-tune, save and load; one instance is one immutable version in memory."""

    kind: ClassVar[str] = "retrieval"

    def __init__(self, encoder: SentenceTransformer, bank: AnswerBank, config: ModelConfig,
                 info: VersionInfo | None = None, memory: ExampleMemory | None = None,
                 answer_embeddings: torch.Tensor | None = None) -> None:
        """`answer_embeddings`: the bank as this encoder embeds it, when the caller has it already (training)."""
        self.encoder = encoder
        self.bank = bank
        self.config = config
        self.info = info
        self.memory = memory or ExampleMemory.empty()
        # (A, d), once per loaded version
        self.answer_embeddings = (answer_embeddings if answer_embeddings is not None
                                  else self.encode(self._answer_texts()))
        self._bank_ids = tuple(answer.id for answer in bank.answers)

    @property
    def name(self) -> str:
        return self.info.name if self.info else "unsaved"

    # ---- scoring -------------------------------------------------------------------------------------------

    def encode(self, texts: list[str]) -> torch.Tensor:
        """L2-normalised embeddings (N, d) of texts, each cut to `max_query_chars`."""
        return embed(self.encoder, texts, self.config.max_query_chars)

    def cosines(self, queries: list[str]) -> np.ndarray:
        """Score of every answer for every query, shape (Q, A): the cosine to the answer's text (to its prototype
        with `memory_centroid`), raised by a near-duplicate remembered question of that answer when the version has
        a memory (models/memory.py). What ranks and samples; `answer_many` serves with the text's score."""
        return self._scores(self.encode(queries))[0]

    def _scores(self, encoded: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(ranked, served) scores as float64 arrays (models/memory.py, `ExampleMemory.scores`)."""
        ranked, served = self.memory.scores(encoded, self.answer_embeddings, self._bank_ids)
        ranked_array = _float64(ranked)
        return ranked_array, ranked_array if served is ranked else _float64(served)

    def policy(self, query: str, temperature: float | None = None) -> np.ndarray:
        """The policy q(answer | query): softmax(cosine / temperature) over the bank, shape (A,)."""
        return policy_from_cosines(self.cosines([query])[0], temperature or self.config.temperature)

    def answer(self, query: str) -> Answered:
        """The best answer for one query."""
        return self.answer_many([query])[0]

    def answer_many(self, queries: list[str]) -> list[Answered]:
        """Best answers for many queries, encoded in batches."""
        if not queries:
            return []
        # prototypes rank; the served score (what min_score reads) stays the answer text's (models/memory.py)
        ranked, served = self._scores(self.encode(queries))
        results = []
        for cosines, texts in zip(ranked, served, strict=True):
            probabilities = policy_from_cosines(cosines, self.config.temperature)
            order = np.argsort(-cosines, kind="stable")[: self.config.top_k]
            top_k = tuple(Ranked(self.bank.answers[i].id, self.bank.answers[i].id, self.bank.answers[i].topic,
                                 float(texts[i]), float(probabilities[i])) for i in order)
            best = self.bank.answers[order[0]]
            results.append(Answered(best.id, best.text, best.topic, best, float(texts[order[0]]),
                                    float(probabilities[order[0]]), top_k))
        return results

    def sample(self, query: str, k: int, temperature: float | None = None,
               rng: np.random.Generator | None = None, replace: bool = False) -> list[Candidate]:
        """Draw k answers from the policy, each with its probability q(answer | query) at `temperature`.

        Without replacement (default) the k answers are distinct and `k` larger than the bank returns the whole
        bank; with `replace=True` they are k i.i.d. draws from q.
        """
        return self.sample_many([query], k, temperature, rng, replace)[0]

    def sample_many(self, queries: list[str], k: int, temperature: float | None = None,
                    rng: Rngs = None, replace: bool = False) -> list[list[Candidate]]:
        """`sample` for many queries, encoded in one batch; `rng` is one generator or one per query."""
        results = []
        for cosines, generator in zip(self.cosines(queries) if queries else [], generators_for(rng, len(queries)),
                                      strict=True):
            probabilities = policy_from_cosines(cosines, temperature or self.config.temperature)
            chosen = (generator.choice(len(probabilities), size=k, p=probabilities) if replace
                      else sample_without_replacement(probabilities, k, generator))
            results.append([_candidate(self.bank.answers[i], float(probabilities[i]), float(cosines[i]))
                            for i in chosen])
        return results

    def named_candidates(self, queries: list[str], keys: list[list[str]],
                         temperature: float | None = None) -> list[list[Candidate]]:
        """Each query's `keys` as candidates with q at `temperature` (base.ScoresNamedAnswers)."""
        row_of = {answer_id: row for row, answer_id in enumerate(self._bank_ids)}
        rows = [[row_of[key] for key in wanted if key in row_of] for wanted in keys]
        asking = [query for query, known in zip(queries, rows, strict=True) if known]
        scored = iter(self.cosines(asking) if asking else [])  # encode only the queries with a known key
        results: list[list[Candidate]] = []
        for known in rows:
            if not known:
                results.append([])
                continue
            cosines = next(scored)
            probabilities = policy_from_cosines(cosines, temperature or self.config.temperature)
            results.append([_candidate(self.bank.answers[i], float(probabilities[i]), float(cosines[i]))
                            for i in known])
        return results

    # ---- training ------------------------------------------------------------------------------------------

    def finetune(self, pairs: list[TrainingPair], config: FinetuneConfig, progress: Progress = no_progress,
                 show_bar: bool = True) -> FinetuneResult:
        """Train a copy on accepted pairs (keys are answer ids); this model is never modified.

        See retrieval_training.py for the loss.
        """
        from .retrieval_training import finetune_retrieval  # training code stays out of serving processes

        return finetune_retrieval(self, pairs, config, progress, show_bar)

    def remember(self, examples: list[Remembered], rule: MemoryRule) -> ResponseModel:
        """This version's encoder with a memory of `examples` (replacing any it had), embedded by this encoder;
        examples of answers the bank does not hold are left out. The rule's weight and centroid 0, or no examples:
        no memory. A query within the rule's threshold cosine of a remembered question raises that answer's score,
        and with a centroid each answer is scored against its prototype (models/memory.py)."""
        known = set(self._bank_ids)
        kept = [e for e in examples if e.answer_id in known] if rule.weight > 0 or rule.centroid > 0 else []
        remembering = copy.copy(self)  # the same encoder, bank and answer embeddings: nothing is encoded again
        remembering.info = None
        remembering.memory = (ExampleMemory(self.encode([e.question for e in kept]), [e.answer_id for e in kept],
                                            [list(e.turn_ids) for e in kept], rule)
                              if kept else ExampleMemory.empty())
        return remembering

    def without_memory(self) -> ResponseModel:
        """This version (same name) scoring by its answer texts alone: a round's proposal (rounds.py)."""
        if not len(self.memory):
            return self
        forgetful = copy.copy(self)
        forgetful.memory = ExampleMemory.empty()
        return forgetful

    def _answer_texts(self) -> list[str]:
        return [answer.text for answer in self.bank.answers]

    # ---- persistence ---------------------------------------------------------------------------------------

    def _memory_summary(self) -> dict[str, Any]:
        """What version.json says of the memory (saving adds memory.pt's hash); {} without one."""
        if not len(self.memory):
            return {}
        return {"examples": len(self.memory), **self.memory.rule.describe()}

    def describe(self, name: str, parent: str | None = None, round_id: int | None = None,
                 eval_numbers: dict[str, Any] | None = None, notes: str = "") -> VersionInfo:
        """The VersionInfo this model would be saved with under `name`."""
        return VersionInfo(
            name=name,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            created_by=f"{getpass.getuser()}@{platform.node()}",
            rsft_version=__version__,
            base_encoder=dict(BASE_ENCODER),
            temperature=self.config.temperature,
            trainable_layers=self.config.trainable_layers,
            answer_bank_hash=self.bank.content_hash(),
            n_answers=len(self.bank),
            parent=parent,
            round_id=round_id,
            eval=dict(eval_numbers or {}),
            notes=notes,
            kind=self.kind,
            memory=self._memory_summary(),
        )

    def save(self, directory: str | Path, info: VersionInfo) -> VersionInfo:
        """Write weights, answers and version.json into an empty or new directory; returns the info written.

        version.json is written last, so a directory without it was never finished.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if any(directory.iterdir()):
            raise ModelLoadError(f"refusing to save into non-empty directory {directory}")
        state = {k: v.detach().clone().contiguous() for k, v in
                 trainable_state(self.encoder, self.config.trainable_layers).items()}
        torch.save(state, directory / WEIGHTS_FILE)
        checkpoint("save:weights-written")
        (directory / ANSWERS_FILE).write_text(
            json.dumps(self.bank.to_records(), indent=1, ensure_ascii=False), encoding="utf-8")
        info = replace(info, weights_sha256=_sha256(directory / WEIGHTS_FILE))
        if len(self.memory):
            info = replace(info, memory={**self._memory_summary(), "sha256": _sha256(self.memory.save(directory))})
        write_version_info(directory, info)
        self.info = info
        return info

    @classmethod
    def load(cls, directory: str | Path, config: ModelConfig | None = None) -> ResponseModel:
        """Load a saved version: the pretrained encoder, with the version's own top layers and bank.

        `config` supplies serving settings (top_k, max_query_chars); temperature and trainable layers come from
        the version itself, since they are part of what was trained.

        Raises:
            ModelLoadError: missing or corrupt files, a weights or bank hash that does not match.
        """
        directory = Path(directory)
        info = read_version_info(directory)
        if info.kind != cls.kind:
            raise ModelLoadError(f"{directory} holds a {info.kind!r} model, not a {cls.kind!r} one")
        try:
            bank = AnswerBank.from_records(json.loads((directory / ANSWERS_FILE).read_text(encoding="utf-8")))
        except (OSError, ValueError, DataError) as exc:
            raise ModelLoadError(f"{directory}: cannot read {ANSWERS_FILE}: {exc}") from exc
        if bank.content_hash() != info.answer_bank_hash:
            raise ModelLoadError(f"{directory}: {ANSWERS_FILE} does not match the bank hash in {VERSION_FILE}")
        weights_path = directory / WEIGHTS_FILE
        if not weights_path.exists() or _sha256(weights_path) != info.weights_sha256:
            raise ModelLoadError(f"{directory}: {WEIGHTS_FILE} is missing or does not match its recorded hash")
        model_config = replace(config or ModelConfig(), temperature=info.temperature,
                               trainable_layers=info.trainable_layers)
        encoder = load_base_encoder()
        _apply_weights(encoder, torch.load(weights_path, map_location="cpu", weights_only=True),
                       info.trainable_layers, directory)
        return cls(encoder, bank, model_config, info, _load_memory(directory, info))

    @classmethod
    def pretrained(cls, bank: AnswerBank, config: ModelConfig,
                   models_dir: str | Path | None = None, shared: bool = False) -> ResponseModel:
        """The untuned model: the pretrained encoder over `bank` (what `rsft init-model` saves). The encoder comes
        from sentence-transformers' cache, so `models_dir` is not used. `shared`: the process's one pretrained
        encoder instead of a copy (encoder.shared_base_encoder), for a model that only ever encodes."""
        return cls(shared_base_encoder() if shared else load_base_encoder(), bank, config)

    def with_bank(self, bank: AnswerBank) -> ResponseModel:
        """The same encoder and memory over another bank (an edited answer bank needs no retraining; remembered
        examples of a removed answer stop counting)."""
        return ResponseModel(self.encoder, bank, self.config, memory=self.memory)


def policy_from_cosines(cosines: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(cosine / temperature), computed stably; sums to 1."""
    logits = np.asarray(cosines, dtype=np.float64) / temperature
    logits -= logits.max()
    weights = np.exp(logits)
    return weights / weights.sum()


def sample_without_replacement(probabilities: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of k distinct draws from `probabilities`, in draw order.

    Gumbel-top-k: adding Gumbel noise to log p and taking the k largest keys is exactly sequential sampling
    without replacement, in one vectorised step.
    """
    with np.errstate(divide="ignore"):
        keys = np.log(probabilities) + rng.gumbel(size=probabilities.shape)
    return np.argsort(-keys, kind="stable")[: min(k, len(probabilities))]


def _candidate(answer: Any, probability: float, cosine: float) -> Candidate:
    return Candidate(answer.id, answer.text, answer.topic, answer, probability, cosine)


def _apply_weights(encoder: SentenceTransformer, saved: dict[str, torch.Tensor], n_layers: int,
                   directory: Path) -> None:
    target = trainable_state(encoder, n_layers)
    if set(saved) != set(target):
        raise ModelLoadError(f"{directory}: {WEIGHTS_FILE} holds other parameters than {n_layers} top layers")
    with torch.no_grad():
        for name, parameter in target.items():
            if saved[name].shape != parameter.shape:
                raise ModelLoadError(f"{directory}: {name} has shape {tuple(saved[name].shape)}, "
                                     f"expected {tuple(parameter.shape)}")
            parameter.copy_(saved[name])


def _float64(scores: torch.Tensor) -> np.ndarray:
    return scores.cpu().numpy().astype(np.float64)


def _load_memory(directory: Path, info: VersionInfo) -> ExampleMemory | None:
    if not info.memory.get("examples"):
        return None
    path = directory / MEMORY_FILE
    if not path.exists() or _sha256(path) != info.memory.get("sha256"):
        raise ModelLoadError(f"{directory}: {MEMORY_FILE} is missing or does not match its recorded hash")
    memory = ExampleMemory.load(directory, MemoryRule.described(info.memory))
    if len(memory) != info.memory["examples"]:
        raise ModelLoadError(f"{directory}: {MEMORY_FILE} holds {len(memory)} examples, version.json says "
                             f"{info.memory['examples']}")
    return memory


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
