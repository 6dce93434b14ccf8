"""The noise-aware reward: EM's estimate of the rate of wrong ratings, and each answer's posterior of being right.

Synthetic ratings from a seeded generator for the estimator; the real MiniLM and the real bank for the scoring.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rsft_plugin.config import FeedbackConfig, ScoreConfig
from rsft_plugin.errors import ConfigError
from rsft_plugin.log import Signal, Turn
from rsft_plugin.models.encoder import embed
from rsft_plugin.stages.evidence import signal_evidence
from rsft_plugin.stages.noise import RATING, Observation, Question, SignalRates, estimate, posteriors
from rsft_plugin.stages.records import Prompt, PromptSet, SampledCandidate
from rsft_plugin.stages.score import score_round, smoothed_rating

START = {RATING: SignalRates(0.1, 0.1)}


def _synthetic(seed: int, flip: float, questions: int = 300, answers: int = 10,
               ratings: int = 4) -> tuple[list[Question], list[str]]:
    """Questions with a policy prior that is right ~60 % of the time; each rating is on an answer the policy
    served, 👍 iff it is the right one, flipped with probability `flip`."""
    rng = np.random.default_rng(seed)
    made, truth = [], []
    for _ in range(questions):
        right = int(rng.integers(answers))
        logits = rng.normal(0, 1, answers)
        logits[right] += 1.5
        prior = np.exp(logits) / np.exp(logits).sum()
        observations = []
        for _ in range(ratings):
            served = int(rng.choice(answers, p=prior))
            observations.append(Observation(f"a{served}", (served == right) != (rng.random() < flip)))
        made.append(Question({f"a{i}": float(p) for i, p in enumerate(prior)}, observations))
        truth.append(f"a{right}")
    return made, truth


@pytest.mark.parametrize("flip", [0.2, 0.4])
def test_em_recovers_a_known_rate_of_wrong_ratings(flip):
    questions, _ = _synthetic(seed=1, flip=flip)
    found = estimate(questions, START)
    assert found.converged
    assert found.rates[RATING].mean == pytest.approx(flip, abs=0.05)
    assert found.summary()["observations"] == 1200


@pytest.mark.parametrize("power", [0.3, 3.0])
def test_an_over_or_under_confident_policy_is_not_mistaken_for_noise_when_its_power_is_fitted(power):
    questions, _ = _synthetic(seed=1, flip=0.2)
    skewed = []
    for q in questions:
        raised = {key: p ** power for key, p in q.prior.items()}
        skewed.append(Question({key: p / sum(raised.values()) for key, p in raised.items()}, q.observations))
    fitted = estimate(skewed, START, fit_prior_power=True)
    assert fitted.rates[RATING].mean == pytest.approx(0.2, abs=0.05)
    assert (fitted.prior_power > 1) == (power < 1)  # it undoes the skew


def test_a_spread_policy_whose_prior_names_only_the_sampled_answers_still_gives_the_true_rate():
    """A round's prior names only the K answers it sampled; with 60 answers and a spread, under-confident policy
    (right as often as its probabilities squared say) the unnamed rest holds over half the mass. That rest is 52
    answers, not one: tempered as one answer, sharpening the prior made it every question's likeliest answer, so
    EM could not fit the policy's under-confidence and blamed the ratings (0.34 here, and ~0.49 on banking77
    whatever the truth, before 2026-12-06)."""
    rng = np.random.default_rng(4)
    answers, k, flip = 60, 8, 0.2
    whole, sampled = [], []
    for _ in range(600):
        prior = np.exp(rng.normal(0, 1.0, answers))
        prior /= prior.sum()
        right, served = int(rng.choice(answers, p=prior ** 2 / (prior ** 2).sum())), int(prior.argmax())
        rating = [Observation(f"a{served}", (served == right) != (rng.random() < flip))]
        whole.append(Question({f"a{i}": float(p) for i, p in enumerate(prior)}, rating))
        top = np.argsort(-prior)[:k]
        sampled.append(Question({f"a{i}": float(prior[i]) for i in top}, rating, unnamed=answers - k))
    assert np.mean([sum(q.prior.values()) for q in sampled]) < 0.5  # the spread case
    by_whole = estimate(whole, START, fit_prior_power=True)
    by_sampled = estimate(sampled, START, fit_prior_power=True)
    assert by_whole.rates[RATING].mean == pytest.approx(flip, abs=0.05)
    assert by_sampled.rates[RATING].mean == pytest.approx(by_whole.rates[RATING].mean, abs=0.03)
    assert by_sampled.prior_power == pytest.approx(by_whole.prior_power, rel=0.15)  # ~2: it undoes the squaring


def test_two_rates_are_estimated_apart_when_raters_err_one_way():
    questions, truth = _synthetic(seed=2, flip=0.0, questions=400)
    rng = np.random.default_rng(3)
    one_way = [dataclasses.replace(q, observations=[  # only right answers get wrong ratings (a 👎), 30 % of them
        Observation(o.key, o.positive and not (o.key == t and rng.random() < 0.3)) for o in q.observations])
        for q, t in zip(questions, truth, strict=True)]
    rates = estimate(one_way, START, symmetric=False).rates[RATING]
    assert rates.miss == pytest.approx(0.3, abs=0.07) and rates.false_alarm < 0.05


def test_with_30_percent_wrong_ratings_the_posterior_finds_the_right_answer_more_often_than_the_raw_rating():
    questions, truth = _synthetic(seed=4, flip=0.3, ratings=3)
    found = estimate(questions, START)
    by_posterior = by_rating = 0
    for question, posterior, right in zip(questions, found.posteriors, truth, strict=True):
        by_posterior += max(posterior, key=posterior.get) == right
        tallies = {key: [0, 0] for key in question.prior}
        for o in question.observations:
            tallies[o.key][0 if o.positive else 1] += 1
        # today's ranking: the smoothed rating, ties broken by the policy
        by_rating += max(tallies, key=lambda k: (smoothed_rating(*tallies[k]), question.prior[k])) == right
    assert by_posterior >= by_rating + 0.05 * len(questions), (by_posterior, by_rating)


def test_a_thumbs_down_moves_mass_to_the_other_answers_in_proportion_to_their_prior():
    prior = {"live": 0.6, "second": 0.3, "third": 0.1}
    before = posteriors(Question(prior), START)
    after = posteriors(Question(prior, [Observation("live", False)]), START)
    assert after["live"] < before["live"]
    assert after["second"] > before["second"] and after["third"] > before["third"]
    assert after["second"] / after["third"] == pytest.approx(prior["second"] / prior["third"])


# ---- in the score stage, on the real encoder --------------------------------------------------------------------

@pytest.fixture
def embed_fixed(pretrained):
    return lambda texts: embed(pretrained.encoder, texts)


def _rated(turn_id: str, sender: str, text: str, answer_id: str, rating: int) -> Turn:
    return Turn(id=turn_id, sender_id=sender, user_text=text, answer_id=answer_id, answer_topic=answer_id,
                created_at="2026-11-30T00:00:00", rating=rating)


PROMPT = "how long does a refund take to reach my card"
NEIGHBOURS = ["how long does a refund take to reach my card?", "How long does a refund take to reach my card",
              "how long does a refund take to reach my card !"]
PRIOR = {"refund_status": 0.5, "shipping_costs": 0.3, "back_in_stock": 0.2}


def _score(bank, embed_fixed, rated, **settings):
    prompt_set = PromptSet([Prompt(0, PROMPT, ("t",), False, False)], embed_fixed([PROMPT]))
    candidates = [SampledCandidate(0, i, a, bank.get(a).text, a, a, q, 0.5, "v0001")
                  for i, (a, q) in enumerate(PRIOR.items())]
    scores = score_round(candidates, prompt_set, rated, [], bank, embed_fixed, ScoreConfig(**settings))
    return {s.candidate.key: s for s in scores.scored}, scores.noise


def test_em_scoring_a_thumbs_down_on_the_live_answer_raises_the_others(bank, embed_fixed):
    unrated, _ = _score(bank, embed_fixed, [], noise_model="em", fit_prior_power=False)
    down, _ = _score(bank, embed_fixed, [_rated("r1", "ann", NEIGHBOURS[0], "refund_status", 0)], noise_model="em",
                     fit_prior_power=False)
    assert unrated["refund_status"].rating == pytest.approx(0.5, abs=0.01)  # the policy's prior, nothing else
    assert down["refund_status"].rating < unrated["refund_status"].rating
    for other in ("shipping_costs", "back_in_stock"):
        assert down[other].rating > unrated[other].rating
    assert down["shipping_costs"].rating / down["back_in_stock"].rating == pytest.approx(1.5)
    assert all(0 <= s.reward <= 2 for s in down.values())  # within w_similarity + w_rating: r_max still bounds it


def test_em_scoring_counts_the_bank_answers_a_round_did_not_sample_as_that_many_answers(bank, embed_fixed):
    """The sampled answers hold 0.6 of the policy; the other 0.4 is spread over the rest of the bank. Tempered
    (prior_power 2) each of those is (0.4 / n)², so together n · (0.4 / n)², not 0.4² as if they were one answer. A
    written reply's alternatives are uncounted: there the rest stays one answer."""
    prompt_set = PromptSet([Prompt(0, PROMPT, ("t",), False, False)], embed_fixed([PROMPT]))
    spread = {"refund_status": 0.3, "shipping_costs": 0.2, "back_in_stock": 0.1}
    config = ScoreConfig(noise_model="em", prior_power=2.0, fit_prior_power=False)

    def refund_rating(keys: dict[str, str]) -> float:
        candidates = [SampledCandidate(0, i, keys.get(a, a), bank.get(a).text, a, a, q, 0.5, "v0001")
                      for i, (a, q) in enumerate(spread.items())]
        scores = score_round(candidates, prompt_set, [], [], bank, embed_fixed, config)
        return next(s.rating for s in scores.scored if s.candidate.answer_id == "refund_status")

    unnamed = len(bank.answers) - len(spread)
    tempered = sum(q ** 2 for q in spread.values())
    assert unnamed > 10
    assert refund_rating({}) == pytest.approx(0.3 ** 2 / (tempered + unnamed * (0.4 / unnamed) ** 2))
    written = {"refund_status": "w-refund"}  # a reply the generative kind wrote: its key is no bank answer
    assert refund_rating(written) == pytest.approx(0.3 ** 2 / (tempered + 0.4 ** 2))


def test_em_scoring_needs_more_than_one_thumbs_up_against_the_policy(bank, embed_fixed):
    """One 👍 on an answer the policy finds unlikely no longer makes it trusted; agreeing ratings do."""
    one = [_rated("r1", "ann", NEIGHBOURS[0], "back_in_stock", 1)]
    old, _ = _score(bank, embed_fixed, one, noise_model="none")
    new, _ = _score(bank, embed_fixed, one, noise_model="em", noise_start=0.3)
    assert old["back_in_stock"].similarity == 1.0 and new["back_in_stock"].similarity < 1.0
    three = [_rated(f"r{i}", f"s{i}", text, "back_in_stock", 1) for i, text in enumerate(NEIGHBOURS)]
    agreed, _ = _score(bank, embed_fixed, three, noise_model="em", noise_start=0.3)
    assert agreed["back_in_stock"].similarity == 1.0 and agreed["back_in_stock"].rating > 0.5


def test_noise_model_none_scores_exactly_as_the_smoothed_rating_and_still_reports_the_rate(bank, embed_fixed):
    """With `trust_posterior` off the posterior changes no score under `noise_model: none`."""
    rated = [_rated("r1", "ann", NEIGHBOURS[0], "refund_status", 1),
             _rated("r2", "bob", NEIGHBOURS[1], "shipping_costs", 0),
             _rated("r3", "bob", NEIGHBOURS[2], "shipping_costs", 1),
             _rated("r4", "cy", "do you sell garden furniture", "back_in_stock", 1)]
    off, noise = _score(bank, embed_fixed, rated, noise_model="none", trust_posterior=0.0)
    on, _ = _score(bank, embed_fixed, rated, noise_model="em")
    for scored in off.values():
        assert scored.rating == smoothed_rating(scored.rating_up, scored.rating_down)
        assert scored.reward == scored.similarity + scored.rating
    assert (off["refund_status"].rating, off["back_in_stock"].rating) == (pytest.approx(2 / 3), 0.5)
    assert off["shipping_costs"].rating == 0.5  # bob's two votes weigh one: half 👍, half 👎
    assert on["back_in_stock"].rating != off["back_in_stock"].rating
    assert 0 < noise.summary()["rate"] < 0.5
    assert noise.summary()["observations"] == pytest.approx(2)  # ann 1, bob 0.5 + 0.5; cy's is not a neighbour


def test_noise_settings_are_validated():
    with pytest.raises(ConfigError, match="noise_model"):
        ScoreConfig(noise_model="magic")
    with pytest.raises(ConfigError, match="noise_start"):
        ScoreConfig(noise_start=0.5)
    with pytest.raises(ConfigError, match="prior_power"):
        ScoreConfig(prior_power=0)


def test_em_scoring_caps_each_sender_so_one_troll_cannot_make_an_answer_trusted(bank, embed_fixed):
    troll = [_rated(f"t{i}", "troll", NEIGHBOURS[i % 3], "back_in_stock", 1) for i in range(50)]
    honest = [_rated("h1", "ann", NEIGHBOURS[0], "back_in_stock", 0),
              _rated("h2", "bob", NEIGHBOURS[1], "back_in_stock", 0)]
    scored, noise = _score(bank, embed_fixed, troll + honest, noise_model="em")
    assert (scored["back_in_stock"].rating_up, scored["back_in_stock"].rating_down) == pytest.approx((1.0, 2.0))
    assert scored["back_in_stock"].similarity < 1.0 and scored["back_in_stock"].rating < 0.5
    assert noise.summary()["observations"] == pytest.approx(3)  # fifty 👍 from one sender weigh one here too


@pytest.mark.parametrize("noise_model", ["none", "em"])
def test_trust_posterior_trusts_a_confident_answer_after_a_thumbs_down_then_none_of_these(bank, embed_fixed,
                                                                                       noise_model):
    """A 👎 and then "None of these" on the next-best answers: when the policy was sure of the rated answer, the
    noise model finds the 👎 more likely careless than the answer wrong; `trust_posterior` then trusts it."""
    down = [_rated("t", "ann", NEIGHBOURS[0], "refund_status", 0)]
    none = signal_evidence([Signal(id=1, turn_id="t", sender_id="ann", kind="none_of_these", reply_key=None,
                                   created_at="2026-11-30T00:00:00", user_text=NEIGHBOURS[0], model_version="v0001",
                                   served_key="refund_status")],
                           FeedbackConfig(), offered=lambda s: ["shipping_costs", "back_in_stock"])

    def scored(prior, **settings):
        prompt_set = PromptSet([Prompt(0, PROMPT, ("t",), False, False)], embed_fixed([PROMPT]))
        candidates = [SampledCandidate(0, i, a, bank.get(a).text, a, a, q, 0.5, "v0001")
                      for i, (a, q) in enumerate(prior.items())]
        scores = score_round(candidates, prompt_set, down, [], bank, embed_fixed,
                             ScoreConfig(noise_model=noise_model, **settings), none)
        counted.append(scores.posterior_trusted)
        return {s.candidate.key: s for s in scores.scored}

    counted: list[int] = []  # each call's count of answers trusted only by their posterior
    sure = {"refund_status": 0.85, "shipping_costs": 0.1, "back_in_stock": 0.05}
    unsure = {"refund_status": 0.4, "shipping_costs": 0.35, "back_in_stock": 0.25}
    off = scored(sure, trust_posterior=0.0)
    on = scored(sure, trust_posterior=0.5)
    assert off["refund_status"].similarity == 0.0, "off: a 👎 answer is never a reference"
    assert on["refund_status"].similarity == 1.0 and on["refund_status"].rating > 0.5
    assert on["refund_status"].reward > max(s.reward for k, s in on.items() if k != "refund_status")
    doubtful = scored(unsure, trust_posterior=0.5)
    assert doubtful["refund_status"].similarity == 0.0, "the policy was not sure: the 👎 stands"
    never_rated = scored({"shipping_costs": 0.9, "refund_status": 0.05, "back_in_stock": 0.05}, trust_posterior=0.5)
    assert never_rated["shipping_costs"].similarity < 1.0, "not rated, only turned down by 'None of these'"
    assert counted == [0, 1, 0, 0]
    with pytest.raises(ConfigError, match="trust_posterior"):
        ScoreConfig(trust_posterior=1.0)
