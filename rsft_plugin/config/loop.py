"""The sections of a round's stages: collect, sample, score, reject, fine-tune, gate."""

from __future__ import annotations

import typing
from dataclasses import dataclass

from ..stages.rules import rule_names, unknown_rule_message
from .fields import check as _check
from .fields import setting as _help


@dataclass
class CollectConfig:
    """Stage 1: which logged questions a round learns from."""

    min_prompts: int = _help("A round with fewer distinct new prompts stops before sampling.", 20)
    max_prompts: int = _help("At most this many prompts per round (newest first).", 2000)
    replay: int = _help("Earlier prompts replayed per round, at most.", 200)
    merge_cosine: float = _help("Prompts at least this similar are merged into one.", 0.95)
    gate_fraction: float = _help("Share of rated prompts kept out of training to check the candidate.", 0.1)

    def __post_init__(self) -> None:
        _check(self.min_prompts >= 1, "collect", "min_prompts", "must be >= 1")
        _check(self.max_prompts >= self.min_prompts, "collect", "max_prompts", "must be >= min_prompts")
        _check(self.replay >= 0, "collect", "replay", "must be >= 0")
        _check(0 < self.merge_cosine <= 1, "collect", "merge_cosine", "must be in (0, 1]")
        _check(0 <= self.gate_fraction < 1, "collect", "gate_fraction", "must be in [0, 1)")


@dataclass
class SampleConfig:
    """Stage 2: candidates drawn from the live policy."""

    k: int = _help("Candidates per prompt.", 8)
    temperature: float = _help("Temperature of the proposal policy q = softmax(cosine / temperature).", 0.1)
    with_replacement: bool = _help("Draw i.i.d. (exact for the statistical rule) instead of k distinct.", False)
    seed: int = _help("Seed of every random draw in a round.", 0)
    named: bool = _help(
        "Also score the answers a prompt's own customers named (a 👍 or a pick) when the k draws missed them "
        "(retrieval).", True)
    named_ratings: bool = _help(
        "With `named`, a 👍 names an answer too (off: only picks do; measured no safer, docs/benchmarks.md 'Named "
        "answers').", True)

    def __post_init__(self) -> None:
        _check(1 <= self.k <= 256, "sample", "k", "must be between 1 and 256")
        _check(self.temperature > 0, "sample", "temperature", "must be > 0")


@dataclass
class ScoreConfig:
    """Stage 3: reward = w_similarity * similarity + w_rating * rating (both in [0, 1]).

    rating: the Beta-smoothed 👍 share (noise_model none) or the posterior that the answer is right (em).
    """

    w_similarity: float = _help("Weight of the similarity to trusted answers.", 1.0)
    w_rating: float = _help("Weight of the rating (smoothed, or the posterior with noise_model em).", 1.0)
    prior_up: float = _help("Beta prior: pseudo-👍 added to every (prompt, answer).", 1.0)
    prior_down: float = _help("Beta prior: pseudo-👎 added to every (prompt, answer).", 1.0)
    neighbour_cosine: float = _help("Questions at least this similar share ratings and references.", 0.85)
    trusted_rating: float = _help(
        "An answer with a 👍 whose rating (smoothed, or its posterior with noise_model em) exceeds this is a trusted "
        "reference.", 0.5)
    max_weight_per_sender: float = _help("Most votes one sender counts for on one (prompt, answer).", 1.0)
    use_golden_train: bool = _help(
        "Treat the golden set's train split as operator-curated references (labels, not ratings).", False)
    noise_model: typing.Literal["none", "em"] = _help(
        "none: rating = the smoothed 👍 share, one 👍 trusts an answer. em: rating = the posterior that the answer "
        "is right, from the live policy's prior and the ratings, with the rate of wrong ratings estimated by EM "
        "(rsft_plugin/stages/noise.py). The rate is estimated and reported either way.", "none")
    trust_posterior: float = _help(
        "Also trust an answer customers rated, 👍 or 👎, when the noise model's posterior that it is right "
        "exceeds this (0: off): a 👎 then 'None of these' on an answer the policy was sure of is often "
        "a careless 👎. Under noise_model none it is rated by its posterior where that is higher.", 0.8)
    noise_start: float = _help("EM: the starting rate of wrong ratings, also where its pseudo-counts sit.", 0.1)
    noise_prior_strength: float = _help("EM: pseudo-ratings at noise_start; fewer real ratings move it less.", 10.0)
    noise_symmetric: bool = _help("EM: one rate for 👎 on right and 👍 on wrong answers (false: two rates).", True)
    prior_power: float = _help("EM: the prior is q(answer | prompt) ** prior_power (below 1 trusts the policy less).",
                               1.0)
    fit_prior_power: bool = _help(
        "EM: fit prior_power to the data too (starting from prior_power), so that an over- or under-confident "
        "policy is not mistaken for noisy ratings.", True)
    max_rated_turns: int = _help(
        "Score reads the newest this many rated turns as evidence (by when the turn was logged), so that a round's "
        "cost does not grow with every rating ever given; 0: all of them.", 10_000)
    max_signals: int = _help("Score reads the newest this many choices and implicit signals; 0: all of them.",
                             10_000)

    def __post_init__(self) -> None:
        _check(self.w_similarity >= 0 and self.w_rating >= 0, "score", "w_similarity",
               "weights must be >= 0")
        _check(self.w_similarity + self.w_rating > 0, "score", "w_rating", "at least one weight must be > 0")
        _check(self.prior_up > 0 and self.prior_down > 0, "score", "prior_up", "priors must be > 0")
        _check(0 < self.neighbour_cosine <= 1, "score", "neighbour_cosine", "must be in (0, 1]")
        _check(0 <= self.trusted_rating < 1, "score", "trusted_rating", "must be in [0, 1)")
        _check(0 <= self.trust_posterior < 1, "score", "trust_posterior", "must be in [0, 1) (0: off)")
        _check(self.max_weight_per_sender > 0, "score", "max_weight_per_sender", "must be > 0")
        _check(self.noise_model in ("none", "em"), "score", "noise_model", "must be none or em")
        _check(0 < self.noise_start < 0.5, "score", "noise_start", "must be in (0, 0.5)")
        _check(self.noise_prior_strength >= 0, "score", "noise_prior_strength", "must be >= 0")
        _check(0 < self.prior_power <= 10, "score", "prior_power", "must be in (0, 10]")
        _check(self.max_rated_turns >= 0, "score", "max_rated_turns", "must be >= 0 (0: all)")
        _check(self.max_signals >= 0, "score", "max_signals", "must be >= 0 (0: all)")


@dataclass
class RejectConfig:
    """Stage 4: which candidates are kept for training."""

    rule: str = _help(f"A registered rejection rule (rsft_plugin/stages/rules.py): {' | '.join(rule_names())}.",
                      "statistical")
    s_min: float = _help("threshold, best_of_n, statistical per prompt: minimum similarity to a trusted answer.",
                         0.8)
    r_min: float = _help("threshold, best_of_n, statistical per prompt: minimum smoothed rating.", 0.5)
    s_min_written: float = _help(
        "The same minimum similarity for a reply the generative kind wrote (a paraphrase of a trusted answer is "
        "less like it than the answer itself); s_min applies to bank answers.", 0.5)
    beta: float = _help("statistical: temperature of the tilt p(c) ∝ q(c)·exp(r(c)/beta).", 0.2)
    r_max: typing.Literal["prompt", "observed", "bound"] = _help(
        "statistical: the envelope M = exp(r_max/beta). prompt: per prompt, r_max = its best answer that clears "
        "s_min and r_min (only those are eligible); observed: the round's largest reward; bound: w_similarity + "
        "w_rating. Measured in docs/benchmarks.md.", "prompt")
    min_accepted: int = _help("A round with fewer accepted samples stops before training.", 10)

    def __post_init__(self) -> None:
        _check(self.rule in rule_names(), "reject", "rule", unknown_rule_message(self.rule))
        _check(0 <= self.s_min <= 1, "reject", "s_min", "must be in [0, 1]")
        _check(0 <= self.s_min_written <= 1, "reject", "s_min_written", "must be in [0, 1]")
        _check(0 <= self.r_min <= 1, "reject", "r_min", "must be in [0, 1]")
        _check(self.beta > 0, "reject", "beta", "must be > 0")
        _check(self.min_accepted >= 1, "reject", "min_accepted", "must be >= 1")


@dataclass
class FinetuneConfig:
    """Stage 5: fine-tuning a copy of the live model on the accepted pairs."""

    learning_rate: float = _help("AdamW learning rate (small: we adjust, not retrain).", 1e-4)
    batch_size: int = _help("Pairs per step.", 32)
    max_epochs: int = _help("Upper bound on epochs.", 10)
    patience: int = _help("Stop after this many epochs without a better validation score (`stop_on`).", 3)
    val_fraction: float = _help("Share of accepted pairs held out for early stopping.", 0.15)
    train_temperature: float = _help("Softmax temperature of the training loss.", 0.05)
    hard_negative_margin: float = _help(
        "Extra cosine margin demanded against rejected candidates. 0 measured on the benchmark: better on banking77 "
        "(many near-identical topics), worse on bitext (docs/benchmarks.md).", 0.1)
    seed: int = _help("Seed of shuffling and the validation split.", 0)
    stop_on: typing.Literal["loss", "accuracy"] = _help(
        "What early stopping watches on the validation pairs: loss, or accuracy (the share whose accepted answer "
        "the model ranks first; the loss breaks ties), which wrongly accepted pairs sway less. The retriever's "
        "fine-tune only; the writer's LoRA watches its loss. Loss: on the "
        "benchmark (3-4 seeds per dataset) accuracy gained on banking77 and lost as much on bitext "
        "(docs/benchmarks.md).", "loss")
    refit: bool = _help(
        "After early stopping has picked the number of epochs, train a fresh copy of the live model that many "
        "epochs on every accepted pair, the validation ones too (a second pass). Off: on banking77 (3 seeds) it "
        "raised the 400 held-out questions by 2.5 points and left 1,000 further ones level (docs/benchmarks.md).",
        False)
    interpolate: float = _help(
        "The retrieval encoder's tuned weights' share of the result: live + interpolate * (tuned - live), the "
        "fine-tune's step taken only part of the way (1: all of it). 0.5 measured (3 seeds, 20 % wrong ratings): "
        "0.5-0.7 held-out points lower on every dataset, golden's truth set 1.4 lower (docs/benchmarks.md).", 1.0)

    def __post_init__(self) -> None:
        _check(0 < self.interpolate <= 1, "finetune", "interpolate", "must be in (0, 1]")
        _check(0 < self.learning_rate < 1, "finetune", "learning_rate", "must be in (0, 1)")
        _check(self.batch_size >= 1, "finetune", "batch_size", "must be >= 1")
        _check(self.max_epochs >= 1, "finetune", "max_epochs", "must be >= 1")
        _check(self.patience >= 1, "finetune", "patience", "must be >= 1")
        _check(0 <= self.val_fraction < 1, "finetune", "val_fraction", "must be in [0, 1)")
        _check(self.train_temperature > 0, "finetune", "train_temperature", "must be > 0")
        _check(self.hard_negative_margin >= 0, "finetune", "hard_negative_margin", "must be >= 0")


@dataclass
class GateConfig:
    """Stage 6: when a candidate may replace the live model — paired exact tests on the questions the two differ on.

    `rsft_plugin/stages/gate.py` explains the tests; every refusal names the test that failed and its numbers.
    """

    test: typing.Literal["mcnemar", "lower_bound"] = _help(
        "lower_bound: promote when the candidate is ahead on the held-out questions (more better than worse) and "
        "the (1 - level) lower confidence bound of its accuracy gain is at least `margin`; mcnemar: promote only "
        "when it is significantly better (exact one-sided McNemar test, p <= level). On 155 benchmark rounds "
        "judged against a 1,000-question truth set, lower_bound with margin -0.01 refused 10 of 133 really better "
        "rounds (mcnemar: 26) and promoted the same 1 of 5 really worse; re-check with `python -m "
        "bench.gate_truth`.", "lower_bound")
    level: float = _help(
        "One-sided level of the promotion test (1: always promote). 0.2, not 0.05: with mcnemar, on 20 benchmark "
        "rounds judged against a 1,000-question truth set, it refused 2 of 10 really better rounds (0.05: 6) and "
        "promoted none of 4 really worse ones.", 0.2)
    margin: float = _help("lower_bound: the smallest gain (absolute; negative tolerates a small loss) the bound must "
                          "clear. -0.01: promote unless the candidate may be worse by more than a point.", -0.01)
    noisy_rate: float = _help(
        "lower_bound: when the round's estimated rate of wrong ratings (score's EM, reported per round) is at least "
        "this, the bound must also clear `noisy_margin`; 1 (the default) turns it off. For a shop whose customers "
        "rate carelessly: a round that learned from such ratings needs more evidence. Measured at 40 % wrong "
        "ratings with 0.3: it refused the 2 really worse rounds it was chosen on for 5 really better ones; on 75 "
        "fresh rounds it caught none of 2 and refused 1 more really better (docs/benchmarks.md, \"A stricter gate "
        "when the ratings are noisy\").",
        1.0)
    noisy_margin: float = _help("lower_bound: the margin a round at or above `noisy_rate` must clear (the stricter "
                                "of this and `margin` applies). -0.005: not worse by more than half a point.", -0.005)
    topic_level: float = _help(
        "Refuse when a topic is significantly worse (exact one-sided test on its changed questions, Holm-corrected "
        "across topics) at this level; 0 turns the check off. Below 0.5, so one question never flags a topic.", 0.05)
    rated_level: float = _help(
        "Refuse when agreement with the kept-out rated turns is significantly worse (exact one-sided test) at this "
        "level; 0 turns the check off.", 0.05)
    max_written_questions: int = _help(
        "Generative kind: the gate writes replies with both writers to at most this many held-out questions (0: "
        "all), chosen from their text and sample.seed, topics taking turns. A written reply costs seconds on a CPU: "
        "40 questions x 2 writers is minutes.", 40)
    writer_worse_level: float = _help(
        "Generative kind: refuse when the candidate writer is significantly worse on topic-correct, similarity or "
        "faithfulness violations (each a one-sided exact paired test) at this level; 0 turns these checks off. "
        "Promotion also needs one measure significantly better (Holm-adjusted over the three) at `level`.", 0.05)

    def __post_init__(self) -> None:
        _check(0 < self.level <= 1, "gate", "level", "must be in (0, 1]")
        _check(self.max_written_questions >= 0, "gate", "max_written_questions", "must be >= 0")
        _check(0 <= self.writer_worse_level < 0.5, "gate", "writer_worse_level", "must be in [0, 0.5)")
        _check(-1 <= self.margin <= 1, "gate", "margin", "must be in [-1, 1]")
        _check(-1 <= self.noisy_margin <= 1, "gate", "noisy_margin", "must be in [-1, 1]")
        _check(0 < self.noisy_rate <= 1, "gate", "noisy_rate", "must be in (0, 1]")
        _check(0 <= self.topic_level < 0.5, "gate", "topic_level", "must be in [0, 0.5)")
        _check(0 <= self.rated_level < 0.5, "gate", "rated_level", "must be in [0, 0.5)")
