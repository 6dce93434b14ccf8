"""The three rejection rules. The statistical one is checked against its theory with a chi-square test."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.stats import chisquare

from rsft_plugin.config import RejectConfig
from rsft_plugin.stages.records import RoundStopped
from rsft_plugin.stages.reject import expected_acceptance, reject, statistical_accept, target_distribution

from .stage_helpers import scored

Q = np.array([0.40, 0.25, 0.15, 0.10, 0.06, 0.04])
REWARDS = np.array([0.2, 1.5, 0.9, 1.8, 0.5, 1.0])
BETA, R_MAX = 0.3, 2.0


def _iid_draws(n: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(Q), size=n, p=Q)
    return [scored(i, f"a{c}", Q[c], REWARDS[c]) for i, c in enumerate(picks)]


def test_statistical_rule_accepts_samples_that_follow_the_target_distribution():
    draws = _iid_draws(80_000, seed=7)
    decisions = statistical_accept(draws, BETA, R_MAX, np.random.default_rng(11))
    accepted = np.bincount([int(d.scored.candidate.answer_id[1:]) for d in decisions if d.accepted],
                           minlength=len(Q))
    target = target_distribution(Q, REWARDS, BETA)
    assert chisquare(accepted, target * accepted.sum()).pvalue > 0.01
    # The same test has power: accepted samples are clearly not distributed like the proposal q.
    assert chisquare(accepted, Q * accepted.sum()).pvalue < 1e-6


def test_statistical_acceptance_rate_matches_its_expectation():
    n = 80_000
    decisions = statistical_accept(_iid_draws(n, seed=3), BETA, R_MAX, np.random.default_rng(5))
    expected = expected_acceptance(Q, REWARDS, BETA, R_MAX)
    observed = sum(d.accepted for d in decisions) / n
    standard_error = np.sqrt(expected * (1 - expected) / n)
    assert abs(observed - expected) < 4 * standard_error
    for d in decisions[:50]:
        assert d.accept_probability == pytest.approx(np.exp((d.scored.reward - R_MAX) / BETA))


def test_statistical_rule_refuses_a_reward_above_r_max():
    with pytest.raises(ValueError, match="exceeds r_max"):
        statistical_accept([scored(0, "a", 0.5, 2.5)], BETA, R_MAX, np.random.default_rng(0))


def test_threshold_rejects_low_similarity_or_low_rating():
    candidates = [scored(0, "good", 0.5, 1.7, similarity=0.9, rating=0.7),
                  scored(0, "unlike", 0.3, 1.2, similarity=0.5, rating=0.7),
                  scored(0, "badly_rated", 0.2, 1.2, similarity=0.95, rating=0.3)]
    outcome = reject(candidates, RejectConfig(rule="threshold", s_min=0.8, r_min=0.5), R_MAX,
                     np.random.default_rng(0))
    assert [d.accepted for d in outcome.decisions] == [True, False, False]
    assert outcome.acceptance_rate == pytest.approx(1 / 3)
    assert outcome.acceptance_by_topic() == {"badly_rated": 0.0, "good": 1.0, "unlike": 0.0}


def test_best_of_n_keeps_one_winner_per_prompt_only_if_it_clears_the_thresholds():
    candidates = [scored(0, "a", 0.5, 1.8, similarity=0.9, rating=0.9, draw=0),
                  scored(0, "b", 0.5, 1.6, similarity=0.9, rating=0.7, draw=1),
                  scored(1, "c", 0.6, 0.9, similarity=0.4, rating=0.5, draw=0),  # best of prompt 1, too weak
                  scored(1, "d", 0.4, 0.6, similarity=0.1, rating=0.5, draw=1)]
    outcome = reject(candidates, RejectConfig(rule="best_of_n"), R_MAX, np.random.default_rng(0))
    assert [d.scored.candidate.answer_id for d in outcome.accepted] == ["a"]


def test_too_few_accepted_stops_the_round_with_a_reason():
    outcome = reject([scored(0, "a", 0.5, 0.1)], RejectConfig(rule="threshold"), R_MAX, np.random.default_rng(0))
    with pytest.raises(RoundStopped, match="only 0 of 1 candidates were accepted by the threshold rule"):
        outcome.require(1)


def _two_prompt_draws(n: int, seed: int) -> list:
    """i.i.d. draws from q for two prompts: prompt 0 with the rewards above, prompt 1 with every reward lowered."""
    rng = np.random.default_rng(seed)
    draws = []
    for prompt, shift in ((0, 0.0), (1, -0.6)):
        for i, c in enumerate(rng.choice(len(Q), size=n, p=Q)):
            similarity = 0.9 if c != 0 else 0.5  # answer 0 is unlike every trusted answer: never eligible
            draws.append(scored(prompt, f"a{c}", Q[c], REWARDS[c] + shift, similarity=similarity, rating=0.7,
                                draw=i))
    return draws


def test_per_prompt_envelope_samples_each_prompts_tilted_policy_over_eligible_answers():
    config = RejectConfig(rule="statistical", r_max="prompt", beta=BETA, s_min=0.8, r_min=0.5)
    outcome = reject(_two_prompt_draws(40_000, seed=2), config, R_MAX, np.random.default_rng(9))
    eligible = np.array([0.0, 1, 1, 1, 1, 1])
    target = target_distribution(Q, REWARDS, BETA) * eligible
    target /= target.sum()  # the same for both prompts: a constant shift of r cancels in p(c|x)
    for prompt in (0, 1):
        accepted = np.bincount([int(d.scored.candidate.answer_id[1:]) for d in outcome.decisions
                                if d.accepted and d.scored.candidate.prompt_id == prompt], minlength=len(Q))
        assert accepted[0] == 0
        assert chisquare(accepted[1:], target[1:] * accepted.sum()).pvalue > 0.01
    # A global envelope would accept prompt 1's answers far less often; per prompt, both rates are equal.
    rates = [np.mean([d.accepted for d in outcome.decisions if d.scored.candidate.prompt_id == p]) for p in (0, 1)]
    assert rates[1] == pytest.approx(rates[0], rel=0.05)


def test_per_prompt_envelope_always_accepts_each_prompts_best_eligible_answer():
    candidates = [scored(0, "best", 0.2, 1.7, similarity=0.9, rating=0.7, draw=0),
                  scored(0, "far_worse", 0.5, 0.9, similarity=0.85, rating=0.5, draw=1),
                  scored(1, "only_eligible", 0.1, 1.3, similarity=0.8, rating=0.5, draw=0),
                  scored(1, "badly_rated", 0.8, 1.6, similarity=0.99, rating=0.4, draw=1)]
    config = RejectConfig(rule="statistical", r_max="prompt", beta=0.1)
    for seed in range(20):
        outcome = reject(candidates, config, R_MAX, np.random.default_rng(seed))
        assert [d.scored.candidate.answer_id for d in outcome.accepted] == ["best", "only_eligible"]
    assert outcome.boundary["r_max"] == "per prompt"


def test_statistical_rule_stays_exact_when_q_underflows():
    # A long written reply: log q = -900, so q is 0.0 in float64. Its acceptance probability is exp(-1/0.3) ≈ 3.6 %;
    # dividing the classic test by M·q keeps it so, where u ~ U(0, M·q) = 0 would have accepted every such reply.
    underflowed = [scored(i, "long_reply", float(np.exp(-900.0)), R_MAX - 1.0) for i in range(4000)]
    decisions = statistical_accept(underflowed, BETA, R_MAX, np.random.default_rng(2))
    rate = sum(d.accepted for d in decisions) / len(decisions)
    expected = np.exp(-1.0 / BETA)
    assert abs(rate - expected) < 4 * np.sqrt(expected * (1 - expected) / len(decisions))


def test_an_unfaithful_reply_is_rejected_whatever_its_reward():
    faithful = scored(0, "grounded", 0.5, R_MAX, similarity=0.99, rating=0.9)
    invented = scored(0, "invented", 0.5, R_MAX, similarity=0.99, rating=0.9)
    invented = replace(invented, candidate=replace(invented.candidate, violations=("amount: 45",)))
    for rule in ("threshold", "best_of_n", "statistical"):
        outcome = reject([faithful, invented], RejectConfig(rule=rule, s_min=0.5, r_min=0.5), R_MAX,
                         np.random.default_rng(0))
        assert [d.accepted for d in outcome.decisions] == [True, False], rule
        assert outcome.decisions[1].accept_probability == 0.0
        assert outcome.unfaithful == 1
