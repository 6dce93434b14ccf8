"""Stage 4 — reject: which scored candidates become training examples. Three rules:

threshold    keep c when similarity(c) >= s_min and rating(c) >= r_min ("low-similarity or low-rated" go).
best_of_n    per prompt, keep the highest-reward candidate if it clears the same two thresholds.
statistical  rejection sampling. Target p(c) ∝ q(c)·exp(r(c)/β), proposal q = the live policy, envelope
             M = exp(r_max/β) so that p̃(c) = q(c)·exp(r(c)/β) <= M·q(c). Draw u ~ U(0, M·q(c)) and accept when
             u <= p̃(c); i.e. accept with probability exp((r(c) − r_max)/β). `reject.r_max`:
               prompt    (default) the target is each prompt's own tilted policy over the answers that clear
                         s_min and r_min, p(c|x) ∝ q(c|x)·exp(r(c)/β)·[eligible], and r_max(x) is the prompt's
                         best eligible reward: every prompt with a good answer teaches something, prompts
                         without one teach nothing.
               observed  one global target; r_max is the largest reward of the round's candidates, so a
                         prompt whose best answer is below the round's best is accepted exp(−gap/β) as often.
               bound     as observed, with r_max = w_similarity + w_rating, the largest reward possible.
             Either way p̃ <= M·q holds for every candidate it is applied to.
             docs/benchmarks.md: the global envelope starves the fine-tune (up to half as many accepted pairs,
             at lower precision); the per-prompt one accepts about as many as best_of_n.

Plain functions over floats: no model is loaded here.
"""

from __future__ import annotations

import math

import numpy as np

from ..config import RejectConfig
from .records import Decision, RejectOutcome, ScoredCandidate


def reject(scored: list[ScoredCandidate], config: RejectConfig, r_max: float,
           rng: np.random.Generator) -> RejectOutcome:
    """Apply `config.rule` to every candidate (`RejectOutcome.require` enforces `min_accepted`)."""
    if config.rule == "threshold":
        decisions = [Decision(s, _clears(s, config), float(_clears(s, config))) for s in scored]
        boundary = {"s_min": config.s_min, "r_min": config.r_min}
    elif config.rule == "best_of_n":
        decisions = _best_of_n(scored, config)
        boundary = {"s_min": config.s_min, "r_min": config.r_min}
    elif config.r_max == "prompt":
        decisions = _statistical_per_prompt(scored, config, rng)
        boundary = {"beta": config.beta, "r_max": "per prompt", "s_min": config.s_min, "r_min": config.r_min}
    else:
        decisions = statistical_accept(scored, config.beta, r_max, rng)
        boundary = {"beta": config.beta, "r_max": r_max}
    return RejectOutcome(config.rule, decisions, r_max, boundary)


def statistical_accept(scored: list[ScoredCandidate], beta: float, r_max: float,
                       rng: np.random.Generator) -> list[Decision]:
    """The classic rule, literally: u ~ U(0, M·q(c)), accept when u <= q(c)·exp(r(c)/β), M = exp(r_max/β).

    Both sides are divided by M (exp(r_max/β) overflows for small β); the comparison is unchanged.
    """
    decisions = []
    for s in scored:
        if s.reward > r_max + 1e-9:
            raise ValueError(f"reward {s.reward} exceeds r_max {r_max}: p <= M·q would not hold")
        q = s.candidate.q
        u_over_m = rng.uniform(0.0, q)  # u / M with u ~ U(0, M·q)
        target_over_m = q * math.exp((s.reward - r_max) / beta)  # p̃(c) / M
        decisions.append(Decision(s, bool(u_over_m <= target_over_m), math.exp((s.reward - r_max) / beta)))
    return decisions


def _statistical_per_prompt(scored: list[ScoredCandidate], config: RejectConfig,
                            rng: np.random.Generator) -> list[Decision]:
    """The classic rule once per prompt x, on the answers that clear s_min and r_min.

    Target p(c|x) ∝ q(c|x)·exp(r(c)/β)·[c clears both thresholds]; envelope M_x = exp(r_max(x)/β) with r_max(x)
    the prompt's best eligible reward, so the prompt's best answer is always accepted and near-ties sometimes.
    """
    best: dict[int, float] = {}
    for s in scored:
        if _clears(s, config):
            prompt_id = s.candidate.prompt_id
            best[prompt_id] = max(best.get(prompt_id, s.reward), s.reward)
    decisions = []
    for s in scored:
        if _clears(s, config):
            decisions += statistical_accept([s], config.beta, best[s.candidate.prompt_id], rng)
        else:
            decisions.append(Decision(s, False, 0.0))
    return decisions


def _clears(s: ScoredCandidate, config: RejectConfig) -> bool:
    return s.similarity >= config.s_min and s.rating >= config.r_min


def _best_of_n(scored: list[ScoredCandidate], config: RejectConfig) -> list[Decision]:
    best: dict[int, ScoredCandidate] = {}
    for s in scored:
        current = best.get(s.candidate.prompt_id)
        if current is None or s.reward > current.reward:
            best[s.candidate.prompt_id] = s
    winners = {id(s) for s in best.values() if _clears(s, config)}
    return [Decision(s, id(s) in winners, float(id(s) in winners)) for s in scored]


def expected_acceptance(q: np.ndarray, rewards: np.ndarray, beta: float, r_max: float) -> float:
    """E[accept] for one i.i.d. draw from q: sum_c q(c)·exp((r(c) − r_max)/β) = Z / M."""
    return float(np.sum(q * np.exp((rewards - r_max) / beta)))


def target_distribution(q: np.ndarray, rewards: np.ndarray, beta: float) -> np.ndarray:
    """p(c) = q(c)·exp(r(c)/β) / Z: what accepted samples follow."""
    weights = q * np.exp((rewards - rewards.max()) / beta)
    return weights / weights.sum()

