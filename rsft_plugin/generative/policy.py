"""The generative kind of response policy: retrieval grounds, the writer words the reply.

For a question, a retriever (a retrieval-kind model, tuned by rounds with `generative.tune_retriever`) ranks the
bank; the writer gets the top `grounding_answers` answers and writes the reply (writer.py). The reply's *topic* is
that of its nearest bank answer under the judge's encoder (the pretrained MiniLM, never tuned), which is what
`rsft eval` and the gate compare with the labelled topic. A reply that could not be written in time is the top
grounding answer itself, with that answer's id as its key, exactly as the retrieval kind would have answered; so is
a reply whose nearest bank answer is none of its grounding answers (`generative.guard_topic`: it drifted to another
topic).

Keys: a written reply's key is "gen-" + the first 16 hex digits of sha256(text); a fallback's key is the answer id.

Sampling draws K i.i.d. replies per question from the writer grounded in the top answer(s), as it serves, each with
log q (`Candidate.probability` is exp(log q)); with `generative.tune_retriever` (default) the retriever then draws
`generative.retriever_draws` bank answers of its own, which the round scores and rejects as a retrieval round would
(stages/rules.py: each kind of candidate is its own rejection problem). `finetune` tunes the writer on the accepted
replies and the retriever on the accepted bank answers. With `retriever_draws: 0` each reply's grounding is drawn
from the retriever's proposal instead (q is then the joint) and the retriever learns from the accepted replies'
groundings. The policy remembers what it drew, so `finetune` can turn the round's accepted keys back into (prompt,
reply) pairs; a bank answer id it did not draw (curated) trains both.

A saved version:
    version.json      kind "generative", the bank hash, weights_sha256 = sha256 of the adapter (or writer.json)
    answers.json      the bank it is grounded in
    retriever/        the retrieval model that grounds it (a retrieval version of its own)
    writer/           writer.json (settings, base checkpoint sha256) + the LoRA adapter; the base is not copied
The base checkpoint is looked up by hash in `base_cache(models_dir)`: $RSFT_BASE_CACHE, else <models_dir>/base-models.

Settings: `load` and `pretrained` take the writer's serving and sampling settings and the LoRA fine-tune's knobs
from the config (`ModelConfig.generative`, rsft.yml's `generative:` section); a loaded version keeps the LoRA
structure its writer.json records (config/generative.py says which field comes from where).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..answer_bank import Answer, AnswerBank
from ..config import FinetuneConfig, ModelConfig
from ..errors import DataError, ModelLoadError
from ..golden import GoldenQuestion
from ..models.base import (
    ANSWERS_FILE,
    VERSION_FILE,
    Answered,
    FinetuneResult,
    Progress,
    TrainingPair,
    VersionInfo,
    generators_for,
    no_progress,
    read_version_info,
    write_version_info,
)
from ..models.kinds import DEFAULT_KIND, policy_class
from .answers import Drawn, GeneratedCandidate, WrittenAnswer, grounding_pairs, reply_key, writer_pairs
from .checkpoint import ensure_checkpoint, sha256_file
from .faithfulness import check_faithfulness
from .judging import nearest_of, outcomes_of
from .lora import WRITER_FILE, WriterExample, finetune_writer, load_writer, save_writer
from .quality import WriterQuality, WrittenOutcome, quality_of
from .settings import LoraTraining, WriterSettings
from .writer import Reply, Writer

if TYPE_CHECKING:
    from ..models.base import Rngs
    from ..models.memory import MemoryRule

BASE_CACHE_ENV = "RSFT_BASE_CACHE"
BASE_CACHE_DIR = "base-models"
RETRIEVER_DIR = "retriever"
WRITER_DIR = "writer"


def base_cache(models_dir: str | Path) -> Path:
    """Where converted base checkpoints live: $RSFT_BASE_CACHE, else <models_dir>/base-models."""
    return Path(os.environ.get(BASE_CACHE_ENV) or Path(models_dir) / BASE_CACHE_DIR)


class GenerativePolicy:
    """Retrieval-grounded writer; one instance is one immutable version in memory."""

    kind: ClassVar[str] = "generative"

    def __init__(self, retriever: Any, writer: Writer, config: ModelConfig,
                 info: VersionInfo | None = None, training: LoraTraining | None = None, judge: Any = None) -> None:
        """`retriever` is a retrieval-kind policy whose answers ground the writer. `judge` (default: `retriever`)
        is the pretrained retrieval model over the same bank: its fixed encoder gives a written reply's nearest
        answer (its topic, the topic guard, the gate's measures), so a tuned retriever never moves the yardstick
        that live and candidate are measured with."""
        self.retriever = retriever
        self.writer = writer
        self.config = config
        self.info = info
        self.training = training or LoraTraining()
        self.judge = judge if judge is not None else retriever
        self._drawn: dict[str, Drawn] = {}  # reply key -> how it was drawn
        self._retrieved: set[tuple[str, str]] = set()  # (question, answer id) the retriever drew as candidates

    @property
    def bank(self) -> AnswerBank:
        return self.retriever.bank

    @property
    def name(self) -> str:
        return self.info.name if self.info else "unsaved"

    # ---- serving -------------------------------------------------------------------------------------------

    def answer(self, query: str) -> WrittenAnswer:
        return self.answer_many([query])[0]

    def answer_many(self, queries: list[str]) -> list[WrittenAnswer]:
        """Ground every query with the retriever, write each reply (or fall back; several at a time:
        `Writer.write_many`), then topic each reply.

        `score` is the question's retrieval cosine (what `model.min_score` and the console's low-score filter read,
        as for the retrieval kind). Below `model.min_score` nothing is written: the assistant answers "didn't
        understand" there, so the reply is the top grounding answer (reason `low_score`) without the writer's
        seconds.
        """
        if not queries:
            return []
        grounded = self.retriever.answer_many(queries)
        groundings = [self._grounding(found) for found in grounded]
        writes = [found.score >= self.config.min_score for found in grounded]
        written = iter(self.writer.write_many([(query, [a.text for a in answers]) for query, answers, write
                                               in zip(queries, groundings, writes, strict=True) if write]))
        replies = [(next(written) if write else Reply(answers[0].text, True, "low_score", 0, 0, 0.0), answers)
                   for answers, write in zip(groundings, writes, strict=True)]
        topics = self.nearest_answers([reply.text for reply, _ in replies])
        results = []
        for found, (reply, answers), (nearest, _cosine) in zip(grounded, replies, topics, strict=True):
            top = answers[0]
            if not reply.fallback and self.writer.settings.guard_topic and nearest.id not in {a.id for a in answers}:
                # the reply reads as another answer of the bank than any it was given: drifted, not grounded
                reply = replace(reply, text=top.text, fallback=True, reason="off_topic")
            key, topic = (top.id, top.topic) if reply.fallback else (reply_key(reply.text), nearest.topic)
            results.append(WrittenAnswer(
                key=key, text=reply.text, topic=topic, answer=top, score=found.score, probability=found.probability,
                top_k=found.top_k, grounding_ids=tuple(a.id for a in answers), fallback=reply.fallback,
                reason=reply.reason, written=reply.written, prompt_tokens=reply.prompt_tokens,
                new_tokens=reply.new_tokens, seconds=reply.seconds))
        return results

    def evaluate_writing(self, questions: list[GoldenQuestion]) -> WriterQuality:
        """Topic-correct share, mean similarity to the labelled answer and faithfulness-violation share of the
        replies to labelled questions (quality.py); what the gate compares besides `evaluate`'s accuracy."""
        return quality_of(self.writing_outcomes(questions))

    def writing_outcomes(self, questions: list[GoldenQuestion]) -> list[WrittenOutcome]:
        """Per question: is the reply's topic the labelled one, its similarity to the labelled answer (the judge's
        encoder: the fixed MiniLM), is it faithful, was it a fallback — what the gate pairs up.

        Topic, similarity and violations judge what the writer wrote, also when serving replaced it (quality.py
        says why); what was served is kept beside them.
        """
        if not questions:
            return []
        return self.writing_outcomes_of(self.answer_many([q.question for q in questions]), questions)

    def writing_outcomes_of(self, answered: list[WrittenAnswer], questions: list[GoldenQuestion]
                            ) -> list[WrittenOutcome]:
        """`writing_outcomes` of replies already written to `questions` (aligned; judging.outcomes_of)."""
        return outcomes_of(self.judge, answered, questions)

    # ---- sampling ------------------------------------------------------------------------------------------

    def sample_many(self, queries: list[str], k: int, temperature: float | None = None,
                    rng: Rngs = None, replace: bool = False) -> list[list[GeneratedCandidate]]:
        """k i.i.d. replies per query from q, with log q and faithfulness (see the module docstring).

        Replies are grounded in the retriever's top answer(s), q = q_w, and followed by `retriever_draws` of the
        retriever's own candidates (bank answers at `temperature`, as its kind samples them, `replace` included).
        With `tune_retriever` and `retriever_draws: 0` each draw is a pair instead: a grounding answer
        a ~ q_r(a | query) at `temperature` (with replacement), then a reply y ~ q_w(y | query, a); log q =
        log q_r(a) + log q_w(y | a), the joint proposal the K i.i.d. draws come from.
        """
        found_all = self.retriever.answer_many(queries) if queries else []
        generators = generators_for(rng, len(queries))
        groundings, requests = [], []  # per request to the writer (all sampled together: it batches them)
        for index, (query, found, generator) in enumerate(zip(queries, found_all, generators, strict=True)):
            for answers, log_q_grounding, count in self._groundings(query, found, k, temperature, generator):
                groundings.append((index, answers, log_q_grounding))
                requests.append((query, tuple(a.text for a in answers), count, int(generator.integers(2**31 - 1))))
        written: list[list[GeneratedCandidate]] = [[] for _ in queries]
        for (i, answers, log_q), samples in zip(groundings, self.writer.sample_many(requests), strict=True):
            written[i].extend(self._candidate(queries[i], found_all[i], answers, s, log_q) for s in samples)
        own = self._retriever_candidates(queries, temperature, generators, replace)
        return [replies + drawn for replies, drawn in zip(written, own, strict=True)]

    def _retriever_candidates(self, queries: list[str], temperature: float | None,
                              generators: list[np.random.Generator], replace: bool) -> list[list[Any]]:
        """The retriever's own draws (bank answers) per query, in one batch, each from its query's generator after
        the written replies' draws; remembered so that they train only the retriever."""
        draws = self.config.generative.own_retriever_draws
        if draws == 0 or not queries:
            return [[] for _ in queries]
        drawn = self.retriever.sample_many(queries, draws, temperature, generators, replace)
        self._retrieved.update((query, c.key) for query, candidates in zip(queries, drawn, strict=True)
                               for c in candidates)
        return drawn

    def _groundings(self, query: str, found: Answered, k: int, temperature: float | None,
                    generator: np.random.Generator) -> list[tuple[tuple[Answer, ...], float, int]]:
        """(grounding answers, log q_r of the drawn one, how many of the k replies get it) for one query."""
        if not self.config.generative.joint_groundings:
            return [(self._grounding(found), 0.0, k)]
        drawn = self.retriever.sample_many([query], k, temperature, generator, replace=True)[0]
        counts = Counter(c.key for c in drawn)  # first-drawn order
        probability = {c.key: c.probability for c in drawn}
        others = self._grounding(found)
        groups = []
        for key, count in counts.items():  # reproducible for a seed
            first = self.bank.get(key)
            rest = [a for a in others if a.id != key][: self.writer.settings.grounding_answers - 1]
            groups.append(((first, *rest), math.log(probability[key]), count))
        return groups

    def _candidate(self, query: str, found: Answered, answers: tuple[Answer, ...], sample: Any,
                   log_q_grounding: float) -> GeneratedCandidate:
        texts = tuple(a.text for a in answers)
        text = sample.text or answers[0].text
        key = reply_key(text)
        self._drawn[key] = Drawn(query, texts, text, tuple(a.id for a in answers))
        verdict = check_faithfulness(text, texts)
        logprob = log_q_grounding + sample.logprob
        return GeneratedCandidate(
            key=key, text=text, topic=answers[0].topic, answer=answers[0], probability=math.exp(logprob),
            cosine=found.score, logprob=logprob, model_logprob=sample.model_logprob,
            grounding_ids=tuple(a.id for a in answers), finished=sample.finished,
            violations=tuple(f"{v.kind}: {v.value}" for v in verdict.violations))

    # ---- training ------------------------------------------------------------------------------------------

    def finetune(self, pairs: list[TrainingPair], config: FinetuneConfig, progress: Progress = no_progress,
                 show_bar: bool = True) -> FinetuneResult:
        """LoRA-train a copy of the writer on the accepted pairs; this policy is never modified.

        Pair keys are replies this policy drew (sample_many) or bank answer ids. Seed, validation share and
        patience come from `config`, epochs are the smaller of `config`'s and the generative settings', learning
        rate and batch size come from the generative settings (a LoRA step on CPU is seconds, not milliseconds).
        """
        retriever = self.retriever
        grounding_pairs = self._grounding_pairs(pairs) if self.config.generative.tune_retriever else []
        if grounding_pairs:
            retriever = self.retriever.finetune(grounding_pairs, config, show_bar=False).model
        examples = [self._example(pair) for pair in writer_pairs(pairs, self._retrieved)]
        if not examples:  # only the retriever's own draws were accepted: the writer stays as it is
            return FinetuneResult(model=self._with(retriever), epochs_run=0, best_epoch=0, best_val_loss=0.0,
                                  train_pairs=0, val_pairs=0, examples_per_second=0.0)
        training = replace(self.training, seed=config.seed, val_fraction=config.val_fraction,
                           patience=config.patience, max_epochs=min(self.training.max_epochs, config.max_epochs))
        started = time.monotonic()
        result = finetune_writer(self.writer, examples, training, progress, show_bar)
        seconds = time.monotonic() - started
        return FinetuneResult(model=self._with(retriever, result.writer), epochs_run=result.epochs_run,
                              best_epoch=result.best_epoch, best_val_loss=result.best_val_loss,
                              train_pairs=result.train_pairs, val_pairs=result.val_pairs,
                              examples_per_second=result.train_pairs * result.epochs_run / max(seconds, 1e-9),
                              history=[{**h, "tokens_per_second": result.tokens_per_second}
                                       for h in result.history], precision=result.precision,
                              threads=result.threads)

    def _grounding_pairs(self, pairs: list[TrainingPair]) -> list[TrainingPair]:
        """The accepted bank answers (and with `retriever_draws: 0` the accepted replies' groundings) as pairs."""
        from_replies = self._drawn if self.config.generative.retriever_draws == 0 else {}
        return grounding_pairs(pairs, from_replies, set(self.bank.ids))

    def _example(self, pair: TrainingPair) -> WriterExample:
        if pair.target_key in self._drawn:
            drawn = self._drawn[pair.target_key]
            return WriterExample(pair.prompt, drawn.grounding, drawn.text)
        try:
            answer = self.bank.get(pair.target_key)
        except KeyError:
            raise DataError(f"fine-tuning pair names key {pair.target_key!r}, which this policy neither drew nor "
                            "holds in its bank") from None
        grounding = tuple(a.text for a in self._grounding(self.retriever.answer(pair.prompt)))
        return WriterExample(pair.prompt, grounding, answer.text)

    # ---- persistence ---------------------------------------------------------------------------------------

    def describe(self, name: str, parent: str | None = None, round_id: int | None = None,
                 eval_numbers: dict[str, Any] | None = None, notes: str = "") -> VersionInfo:
        info = self.retriever.describe(name, parent, round_id, eval_numbers, notes)
        base = self.writer.base
        return replace(info, kind=self.kind, temperature=self.writer.settings.temperature,
                       base_encoder={**info.base_encoder, "writer_base": base.name if base else "",
                                     "writer_base_sha256": base.sha256 if base else ""})

    def save(self, directory: str | Path, info: VersionInfo) -> VersionInfo:
        """Write retriever/, writer/ (adapter only), answers.json and, last, version.json."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if any(directory.iterdir()):
            raise ModelLoadError(f"refusing to save into non-empty directory {directory}")
        self.retriever.save(directory / RETRIEVER_DIR, replace(info, kind=self.retriever.kind))
        save_writer(self.writer, directory / WRITER_DIR)
        (directory / ANSWERS_FILE).write_text(
            json.dumps(self.bank.to_records(), indent=1, ensure_ascii=False), encoding="utf-8")
        info = replace(info, kind=self.kind, weights_sha256=sha256_file(_hashed_file(directory)))
        write_version_info(directory, info)
        self.info = info
        return info

    @classmethod
    def load(cls, directory: str | Path, config: ModelConfig | None = None) -> GenerativePolicy:
        """Load a saved generative version; the base checkpoint by hash from `base_cache(<models dir>)`.

        Raises:
            ModelLoadError: another kind, missing or damaged parts, a hash that does not match.
        """
        directory = Path(directory)
        info = read_version_info(directory)
        if info.kind != cls.kind:
            raise ModelLoadError(f"{directory} holds a {info.kind!r} model, not a {cls.kind!r} one")
        config = config or ModelConfig(kind=cls.kind)
        retriever = policy_class(DEFAULT_KIND).load(directory / RETRIEVER_DIR, replace(config, kind=DEFAULT_KIND))
        if retriever.bank.content_hash() != info.answer_bank_hash:
            raise ModelLoadError(f"{directory}: the retriever's bank does not match the bank hash in {VERSION_FILE}")
        hashed = _hashed_file(directory)
        if not hashed.exists() or sha256_file(hashed) != info.weights_sha256:
            raise ModelLoadError(f"{directory}: {hashed.name} is missing or does not match its recorded hash")
        configured = config.generative
        writer = load_writer(directory / WRITER_DIR, base_cache(directory.parent), configured.writer_settings())
        judge = policy_class(DEFAULT_KIND).pretrained(retriever.bank, replace(config, kind=DEFAULT_KIND), shared=True)
        return cls(retriever, writer, config, info, configured.lora_training(), judge)

    @classmethod
    def pretrained(cls, bank: AnswerBank, config: ModelConfig, models_dir: str | Path | None = None,
                   settings: WriterSettings | None = None) -> GenerativePolicy:
        """The untuned writer grounded by the pretrained retriever over `bank` (what `rsft init-model` saves).

        The base checkpoint is converted on first use into `base_cache(models_dir)` (default var/models), and the
        4-bit decode kernel is compiled now if this machine has no build of it yet, so that the server loading the
        version finds it ready (a failed build is a warning: the writer decodes from float32).
        `settings` default to the config's (`config.generative`).
        """
        retriever = policy_class(DEFAULT_KIND).pretrained(bank, replace(config, kind=DEFAULT_KIND))
        checkpoint = ensure_checkpoint(base_cache(models_dir or Path("var") / "models"))
        cls.prepare_machine()
        writer = Writer.from_checkpoint(checkpoint, settings or config.generative.writer_settings())
        return cls(retriever, writer, config, training=config.generative.lora_training())

    @classmethod
    def prepare_machine(cls) -> None:
        """Compile the 4-bit decode kernel (or load this machine's build), so that the first server to load a
        version does not pay the ~30-50 s; a failed build is logged as a warning (the writer decodes from float32)."""
        from .quantised import build_kernel

        build_kernel()

    def with_bank(self, bank: AnswerBank) -> GenerativePolicy:
        """The same writer grounded in another bank (an edited answer bank needs no retraining)."""
        return GenerativePolicy(self.retriever.with_bank(bank), self.writer, self.config, None, self.training,
                                self.judge.with_bank(bank) if self.judge is not self.retriever else None)

    # ---- helpers -------------------------------------------------------------------------------------------

    def _with(self, retriever: Any, writer: Writer | None = None, info: VersionInfo | None = None
              ) -> GenerativePolicy:
        """A version like this one with another retriever (and writer): the same config, LoRA knobs and judge."""
        return GenerativePolicy(retriever, writer or self.writer, self.config, info, self.training, self.judge)

    def _grounding(self, found: Answered) -> tuple[Answer, ...]:
        ids = [r.answer_id for r in found.top_k if r.answer_id][: self.writer.settings.grounding_answers]
        return tuple(self.bank.get(i) for i in ids) or (found.answer,)

    def nearest_answers(self, texts: list[str]) -> list[tuple[Answer, float]]:
        """Each text's nearest bank answer under the judge's fixed encoder, with the cosine."""
        return nearest_of(self.judge, self.judge.encode(texts))

    # ---- example memory (the retriever's: models/memory.py) ------------------------------------------------

    def remember(self, examples: list[Any], rule: MemoryRule) -> GenerativePolicy:
        """This version, its retriever remembering `examples` by `rule`: grounding follows them as retrieval does."""
        return self._with(self.retriever.remember(examples, rule))

    def without_memory(self) -> GenerativePolicy:
        """The same version (same name) with its retriever scoring without remembered examples. It shares what it
        draws with this one: a round samples from it and then fine-tunes this one on the accepted draws."""
        forgetful = self._with(self.retriever.without_memory(), info=self.info)
        forgetful._drawn, forgetful._retrieved = self._drawn, self._retrieved
        return forgetful


def _hashed_file(directory: Path) -> Path:
    """The file whose sha256 is the version's weights_sha256: the adapter, or writer.json when there is none."""
    adapter = directory / WRITER_DIR / "adapter_model.safetensors"
    return adapter if adapter.exists() else directory / WRITER_DIR / WRITER_FILE
