"""One rejection-sampling fine-tuning round, start to finish, recorded in SQLite as it goes.

collect -> sample -> score -> reject -> finetune -> gate -> promote (or keep) -> report

A round holds a file lock (one round at a time, whoever starts it: CLI, worker or HTTP trigger), writes its stage
and progress to its `rounds` row for `rsft status` and the console, and always ends with a status:
promoted, kept (the gate refused, with the reason), stopped (too little data, with the reason) or failed.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import jobs
from .choices import offered_answers
from .config import Config, ModelConfig
from .errors import RsftError
from .faults import checkpoint
from .golden import load_golden
from .log import CandidateRow, RoundPrompt, RoundRecord, Signal, utc_now
from .models import ResponsePolicy, load_version
from .models.base import RemembersExamples
from .models.encoder import embed, load_base_encoder
from .models.memory import MemoryRule
from .parts import Parts
from .stages.collect import collect_prompts
from .stages.evidence import grounding_evidence, known_labels, rating_evidence, signal_evidence, unlabelled
from .stages.finetune import finetune
from .stages.gate import describe, gate
from .stages.memory import read_remembered
from .stages.promote import promote
from .stages.records import GateResult, PromptSet, RejectOutcome, RoundStopped, ScoredCandidate, TrainingPair
from .stages.reject import reject
from .stages.report import write_report
from .stages.sample import named_answers, sample_candidates
from .stages.score import score_round
from .stages.seeding import content_rng

log = logging.getLogger(__name__)
STAGES = ("collect", "sample", "score", "reject", "finetune", "gate", "promote", "report")


class RoundBusy(RsftError):
    """Another round is running."""


@dataclass
class RoundResult:
    round_id: int
    status: str  # promoted | kept | stopped | failed
    reason: str
    live_version: str
    new_version: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    report_dir: Path | None = None

    def record(self, parts: Parts) -> RoundRecord | None:
        """The round's row as the log has it now."""
        return parts.log.round(self.round_id)


def run_round(parts: Parts, echo: Callable[[str], None] = lambda line: None, show_bar: bool = True,
              job_id: int | None = None) -> RoundResult:
    """Run one round with `parts.config` (CLI flags already applied), recorded as a job of kind "round".

    Args:
        job_id: a job queued for this round (by the web's POST /api/rounds); None records a new job.

    Raises:
        RoundBusy: another round holds the lock.
        RegistryError / ModelLoadError: there is no loadable live model to start from.
    """
    config, log_ = parts.config, parts.log
    with ExitStack() as held:
        try:
            held.enter_context(round_lock(config.paths.run_dir))
        except RoundBusy as busy:
            if job_id is not None:  # the job queued for this process will not run
                jobs.finish(log_, job_id, failed=True, message=str(busy))
            raise
        jobs.sweep(log_)  # a round killed earlier is marked failed before this one starts
        job = jobs.adopt(log_, job_id) if job_id is not None else jobs.start(log_, jobs.ROUND, exclusive=False)
        result: RoundResult | None = None
        try:
            live = load_version(parts.registry.live_path(), round_model_config(config))
            round_id = log_.start_round(live.name, config.reject.rule, _params(config), os.getpid(), job.id)
            echo(f"round {round_id}: live model {live.name}, rule {config.reject.rule}, k={config.sample.k}")
            result = _Round(parts, live, round_id, echo, show_bar).run()
            return result
        finally:
            failed = result is None or result.status == "failed"
            jobs.finish(log_, job.id, failed, result.reason if result else "the round could not start")


def round_model_config(config: Config) -> ModelConfig:
    """`config.model` as a round loads the live version with: a generative writer runs with the round's threads
    (`generative.round_threads`), not the serving ones; a round has a process of its own."""
    return dataclasses.replace(config.model, generative=config.generative.for_rounds())


class _Round:
    def __init__(self, parts: Parts, live: ResponsePolicy, round_id: int,
                 echo: Callable[[str], None], show_bar: bool) -> None:
        self.config, self.store, self.live, self.round_id = parts.config, parts.log, live, round_id
        self.echo, self.show_bar = echo, show_bar
        self.registry = parts.registry
        self.result = RoundResult(round_id, "running", "", live.name)
        self.outcome: RejectOutcome | None = None
        self.gate_result: GateResult | None = None
        self._last_write = 0.0

    def run(self) -> RoundResult:
        try:
            self._stages()
        except RoundStopped as stopped:
            self.result.status, self.result.reason = "stopped", str(stopped)
        except Exception as exc:  # a failed round is recorded, never half-promoted; the caller decides to go on
            log.exception("round %s failed", self.round_id)
            self.result.status, self.result.reason = "failed", f"{type(exc).__name__}: {exc}"
        self._finish()
        return self.result

    def _stages(self) -> None:
        scorer = load_base_encoder()

        def embed_fixed(texts: list[str]) -> Any:
            return embed(scorer, texts, self.config.model.max_query_chars)

        with self._stage("collect"):
            prompts = collect_prompts(self.store, embed_fixed, self.config.collect, self.config.sample.seed)
            self._note(prompts=len(prompts.prompts), trainable_prompts=len(prompts.trainable),
                       gate_prompts=len(prompts.prompts) - len(prompts.trainable),
                       replayed_prompts=sum(p.replay for p in prompts.prompts))
        with self._stage("sample"):
            newest = self.config.score  # the newest evidence only: a round's cost bounded by it, not by history
            rated = self.store.rated_turns(exclude_turn_ids=prompts.gate_turn_ids,
                                           newest=newest.max_rated_turns or None)
            signals = known_labels(self.store.signals(exclude_turn_ids=prompts.gate_turn_ids,
                                                      newest=newest.max_signals or None), self.live.bank.ids)
            rated = unlabelled(rated, signals, self.config.feedback)
            votes = [*grounding_evidence(rated, self.config.feedback.grounding_weight),
                     *signal_evidence(signals, self.config.feedback, self._offered_keys)]
            sample = self.config.sample
            named = (named_answers(prompts.trainable, [*rating_evidence(rated), *votes], sample.named_ratings)
                     if sample.named else None)
            candidates = sample_candidates(self._proposal(), prompts.trainable, sample, self._progress,
                                           named)
            self._note(candidates=len(candidates), named_candidates=sum(c.named for c in candidates))
        with self._stage("score"):
            bank = self.live.bank
            curated = (load_golden(self.config.paths.golden, bank, "train") if self.config.score.use_golden_train
                       else [])
            scores = score_round(candidates, prompts, rated, curated, bank, embed_fixed, self.config.score, votes)
            scored, noise = scores.scored, scores.noise.summary()
            noise_rate = noise["rate"] if noise else None  # reported with the round, and the gate reads it
            rewards = [s.reward for s in scored]
            self._note(rated_turns_used=len(rated), signals_used=dict(Counter(s.kind for s in signals)),
                       signal_votes=len(votes), reward_mean=float(np.mean(rewards)) if rewards else 0.0,
                       rating_noise_rate=noise_rate, rating_noise=noise,
                       posterior_trusted=scores.posterior_trusted)
        with self._stage("reject"):
            bound = self.config.score.w_similarity + self.config.score.w_rating
            r_max = max(rewards, default=bound) if self.config.reject.r_max == "observed" else bound
            uniforms = _reject_rng(self.config.sample.seed, prompts, scored)
            self.outcome = reject(scored, self.config.reject, r_max, uniforms)
            self._save_rows(prompts, self.outcome)
            self._note(accepted=len(self.outcome.accepted), acceptance_rate=round(self.outcome.acceptance_rate, 4),
                       rejected_unfaithful=self.outcome.unfaithful,
                       acceptance_by_topic={t: round(r, 4) for t, r in self.outcome.acceptance_by_topic().items()})
            self.echo(f"  accepted {len(self.outcome.accepted)} of {len(scored)} candidates "
                      f"({self.outcome.acceptance_rate:.1%})"
                      + (f"; {self.outcome.unfaithful} written replies rejected as unfaithful to their grounding"
                         if self.outcome.unfaithful else ""))
            self.outcome.require(self.config.reject.min_accepted)  # recorded above, then stop if too few
        with self._stage("finetune"):
            tuned = finetune(self.live, _training_pairs(prompts, self.outcome), self.config.finetune,
                             self._progress, show_bar=self.show_bar)
            self._note(finetune={"epochs": tuned.epochs_run, "best_epoch": tuned.best_epoch,
                                 "best_val_loss": round(tuned.best_val_loss, 4), "train_pairs": tuned.train_pairs,
                                 "val_pairs": tuned.val_pairs, "refit_epochs": tuned.refit_epochs,
                                 "examples_per_second": round(tuned.examples_per_second, 1),
                                 "precision": tuned.precision, "threads": tuned.threads, "history": tuned.history})
            candidate = self._with_memory(tuned.model)
        with self._stage("gate"):
            heldout = load_golden(self.config.paths.golden, bank, "heldout")
            rated_slice = self.store.rated_turns(only_turn_ids=prompts.gate_turn_ids)  # not every rated turn
            self.gate_result = gate(self.live, candidate, heldout, rated_slice, self.config.gate,
                                    seed=self.config.sample.seed, rating_noise_rate=noise_rate)
            self._note(gate=_gate_numbers(self.gate_result))
            self.echo(f"  gate: {'promote' if self.gate_result.promote else 'keep'} — {self.gate_result.reason}")
        with self._stage("promote"):
            if self.gate_result.promote:
                info = promote(self.registry, candidate, self.live.name, self.round_id,
                               {"heldout_accuracy": round(self.gate_result.candidate_accuracy, 4),
                                "heldout_n": self.gate_result.evidence.heldout.n, "rule": self.config.reject.rule,
                                **_written_numbers(self.gate_result),
                                "accepted": len(self.outcome.accepted)},
                               notes=f"round {self.round_id}, {self.config.reject.rule} rule")
                self.result.new_version = info.name
                self.result.status = "promoted"
            else:
                self.result.status = "kept"
            self.result.reason = self.gate_result.reason

    def _proposal(self) -> ResponsePolicy:
        """What the round samples from: the live version without its example memory. The memory makes the policy
        near-certain on questions like remembered ones, so a proposal with it would rarely offer the alternatives
        that correct a wrongly remembered answer (measured: docs/benchmarks.md, "Remembering accepted examples")."""
        return self.live.without_memory() if isinstance(self.live, RemembersExamples) else self.live

    def _with_memory(self, model: ResponsePolicy) -> ResponsePolicy:
        """The tuned copy with the accepted examples of every recorded round remembered (a kind that can)."""
        settings = self.config.model
        if not isinstance(model, RemembersExamples) or settings.memory_size == 0:
            return model
        examples = read_remembered(self.store, settings.memory_size)
        rule = MemoryRule.configured(settings)
        self._note(memory={"examples": len(examples), **rule.describe(), "rounds": len({e.round_id for e in examples})})
        return model.remember(examples, rule)

    def _offered_keys(self, signal: Signal) -> list[str]:
        """The answers a "None of these" turned down: the choices its turn was offered (computed again from it)."""
        turn = self.store.turn(signal.turn_id)
        return [a.id for a in offered_answers(turn, self.live.bank, self.config.feedback)] if turn else []

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        self.store.update_round(self.round_id, stage=name, progress=0.0, message="")
        checkpoint(f"stage:{name}")
        started = time.perf_counter()
        try:
            yield
        finally:
            self.result.stage_seconds[name] = round(time.perf_counter() - started, 3)
        self.echo(f"  {name:<9} done in {self.result.stage_seconds[name]:.1f} s")

    def _progress(self, stage: str, fraction: float, message: str) -> None:
        now = time.monotonic()
        if now - self._last_write >= 0.5 or fraction >= 1.0:  # throttled: SQLite writes are not free
            self._last_write = now
            self.store.update_round(self.round_id, stage=stage, progress=round(fraction, 4), message=message)

    def _note(self, **numbers: Any) -> None:
        self.result.stats.update(numbers)

    def _save_rows(self, prompts: PromptSet, outcome: RejectOutcome) -> None:
        rows = []
        for d in outcome.decisions:
            c = d.scored.candidate
            rows.append(CandidateRow(
                prompt_id=c.prompt_id, draw=c.draw, candidate_key=c.key,
                candidate_text=c.text, answer_id=c.answer_id, topic=c.topic, q=c.q,
                cosine=c.cosine, similarity=d.scored.similarity, rating_up=d.scored.rating_up,
                rating_down=d.scored.rating_down, rating=d.scored.rating, reward=d.scored.reward,
                accept_probability=d.accept_probability, accepted=d.accepted, rule=outcome.rule,
                sampled_by=c.sampled_by))
        self.store.save_round_rows(self.round_id, [
            RoundPrompt(prompt_id=p.id, text=p.text, turn_ids=list(p.turn_ids), replay=bool(p.replay),
                        gate_only=bool(p.gate_only)) for p in prompts.prompts], rows)

    def _finish(self) -> None:
        with self._stage("report"):
            directory = self.config.paths.rounds_dir / f"round-{self.round_id:04d}"
            self.result.report_dir = directory
            record = {"round_id": self.round_id, "status": self.result.status, "reason": self.result.reason,
                      "live_version": self.live.name, "new_version": self.result.new_version,
                      "rule": self.config.reject.rule, "params": _params(self.config), "stats": self.result.stats,
                      "stage_seconds": self.result.stage_seconds, "finished_at": utc_now()}
            try:
                write_report(directory, record, self.outcome, self.gate_result)
            except OSError as exc:
                log.error("round %s: could not write its report: %s", self.round_id, exc)
        self.store.update_round(self.round_id, status=self.result.status, reason=self.result.reason,
                                new_version=self.result.new_version, stats=self.result.stats,
                                stage_seconds=self.result.stage_seconds, report_dir=str(self.result.report_dir),
                                finished_at=utc_now(), stage="done", progress=1.0)
        self.echo(f"round {self.round_id} {self.result.status}: {self.result.reason}")


def _training_pairs(prompts: PromptSet, outcome: RejectOutcome) -> list[TrainingPair]:
    text = {p.id: p.text for p in prompts.prompts}
    return training_pairs((d.scored.candidate.prompt_id, text[d.scored.candidate.prompt_id], d.scored.candidate.key,
                           d.accepted) for d in outcome.decisions)


def training_pairs(candidates: Iterable[tuple[int, str, str, bool]]) -> list[TrainingPair]:
    """Accepted candidates become targets; the same prompt's rejected candidates become hard negatives (by key).

    `candidates` are (prompt id, prompt text, candidate key, accepted) in draw order — from a round's decisions,
    or from its recorded rows (the benchmark rebuilds a round's pairs that way).
    """
    rows = list(candidates)
    accepted: dict[int, set[str]] = {}
    rejected: dict[int, set[str]] = {}
    for prompt_id, _, key, ok in rows:
        (accepted if ok else rejected).setdefault(prompt_id, set()).add(key)
    return [TrainingPair(text, key, tuple(sorted(rejected.get(prompt_id, set()) - accepted.get(prompt_id, set()))))
            for prompt_id, text, key, ok in rows if ok]


def _reject_rng(seed: int, prompts: PromptSet, scored: list[ScoredCandidate]) -> np.random.Generator:
    """The reject rule's uniforms, seeded by what is being judged (each candidate's prompt text, key and draw)."""
    text = {p.id: p.text for p in prompts.prompts}
    return content_rng(seed, "reject", *(f"{text[s.candidate.prompt_id]}|{s.candidate.key}|{s.candidate.draw}"
                                         for s in scored))


def _gate_numbers(result: GateResult) -> dict[str, Any]:
    """The gate's numbers in the round's stats: accuracies, the paired counts (enough to recompute a verdict under
    another config) and every test that ran, with its p-value and level (topics: only the failed ones)."""
    topic_checks = [c for c in result.checks if c.check == "topic"]
    recorded = [c for c in result.checks if c.check != "topic" or not c.passed]
    return {"promote": result.promote, "live_accuracy": round(result.live_accuracy, 4),
            "candidate_accuracy": round(result.candidate_accuracy, 4), "rated_n": result.rated_n,
            "rated_live": result.rated_live, "rated_candidate": result.rated_candidate,
            "per_topic": result.per_topic, "evidence": result.evidence.to_dict(),
            "checks": [c.to_dict() for c in recorded], "tests": [describe(c) for c in recorded],
            "topics_tested": len(topic_checks), "failed": [describe(c) for c in result.failed],
            **({"written": {"n": written.topic.n, "live": written.live, "candidate": written.candidate}}
               if (written := result.evidence.written) else {})}


def _written_numbers(result: GateResult) -> dict[str, Any]:
    """A written gate's measures of the promoted writer, for its version's eval numbers."""
    written = result.evidence.written
    return {"written": dict(written.candidate)} if written else {}


def _params(config: Config) -> dict[str, Any]:
    return {name: dataclasses.asdict(getattr(config, name))
            for name in ("collect", "sample", "score", "reject", "finetune", "gate")}


@contextmanager
def round_lock(run_dir: Path) -> Iterator[None]:
    """Held by whatever changes the live model from the outside (a round, a bank publication); not re-entrant.

    Raises:
        RoundBusy: someone else holds it.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "round.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise RoundBusy("another round is running; wait for it (rsft status) and try again") from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
