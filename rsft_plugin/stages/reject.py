"""Stage 4 — reject: which scored candidates become training examples, by the rule `reject.rule` names.

The rules themselves (threshold, statistical, best_of_n, and any registered one) and their maths are in rules.py;
this stage builds the configured rule, applies it, and records its decisions as the round's `RejectOutcome`.
A written reply that states a fact its grounding answers do not (an amount, a duration, a URL, an email, a phone
number: `SampledCandidate.violations`) is rejected whatever its reward: a fine-tune on it would teach the writer
to invent shop policy. The rule still sees it (its draws stay those of an unfiltered round).

Plain functions over floats: no model is loaded here.
"""

from __future__ import annotations

import numpy as np

from ..config import RejectConfig
from .records import Decision, RejectOutcome, ScoredCandidate
from .rules import get_rule, statistical_verdicts


def reject(scored: list[ScoredCandidate], config: RejectConfig, r_max: float,
           rng: np.random.Generator) -> RejectOutcome:
    """Apply `config.rule` to every candidate (`RejectOutcome.require` enforces `min_accepted`).

    `r_max` is the round's global envelope (the statistical rule with `reject.r_max` observed or bound uses it).
    Raises ConfigError for an unregistered rule, ValueError when the rule's verdicts do not match the candidates.
    """
    rule = get_rule(config.rule).from_config(config)
    verdicts = rule.decide(scored, r_max, rng)
    if len(verdicts) != len(scored):
        raise ValueError(f"the {config.rule} rule gave {len(verdicts)} verdicts for {len(scored)} candidates")
    decisions = [Decision(s, False, 0.0) if s.candidate.violations else Decision(s, bool(v.accepted),
                                                                                 float(v.probability))
                 for s, v in zip(scored, verdicts, strict=True)]
    unfaithful = sum(1 for s in scored if s.candidate.violations)
    return RejectOutcome(config.rule, decisions, r_max, rule.boundary(r_max), unfaithful)


def statistical_accept(scored: list[ScoredCandidate], beta: float, r_max: float,
                       rng: np.random.Generator) -> list[Decision]:
    """The classic rule: accept c ~ q when u ~ U(0, M·q(c)) falls below p̃(c) = q(c)·exp(r(c)/β), M = exp(r_max/β)."""
    return [Decision(s, v.accepted, v.probability)
            for s, v in zip(scored, statistical_verdicts(scored, beta, r_max, rng), strict=True)]


def expected_acceptance(q: np.ndarray, rewards: np.ndarray, beta: float, r_max: float) -> float:
    """E[accept] for one i.i.d. draw from q: sum_c q(c)·exp((r(c) − r_max)/β) = Z / M."""
    return float(np.sum(q * np.exp((rewards - r_max) / beta)))


def target_distribution(q: np.ndarray, rewards: np.ndarray, beta: float) -> np.ndarray:
    """p(c) = q(c)·exp(r(c)/β) / Z: what accepted samples follow."""
    weights = q * np.exp((rewards - rewards.max()) / beta)
    return weights / weights.sum()
