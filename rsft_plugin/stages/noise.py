"""How often customers' ratings are wrong, estimated from the ratings themselves, and each answer's posterior.

A Dawid–Skene style latent-class model with one latent per question x: exactly one answer is right for x, and
which one is a latent r_x. Its prior π_x comes from the live policy, tempered:

    π_x(a) ∝ q(a | x) ** prior_power          (q: the policy's probability; an `other` bucket holds the rest)

where `other` stands for the answers the question does not name (a round names only the K sampled ones), each
with an equal part of the rest, and is tempered as that many answers.

Every piece of evidence about x is an `Observation` (answer a, kind, positive or not, weight). A kind is a signal
with its own error rates (`SignalRates`): a rating (👍 / 👎), later a click on "Was it one of these?" or an
implicit signal (issue 11, items 1 and 2) — they plug in as observations of their own kind, nothing else changes.

    P(positive | r = a) = 1 − miss           (a right answer gets a 👎 with probability `miss`)
    P(positive | r ≠ a) = false_alarm         (a wrong answer gets a 👍 with probability `false_alarm`)

so the posterior is the prior times one likelihood ratio per observation, raised to the observation's weight:

    P(r = a | O_x) ∝ π_x(a) · Π_{o on a} [P(o | right) / P(o | wrong)] ** w_o

A 👎 on a lowers a's share and raises every other answer's in proportion to its prior (they share one latent).

EM: the E-step computes the posteriors with the current rates; the M-step sets each estimated kind's rates to the
expected share of wrong observations, with `prior_strength` pseudo-observations at the starting rate so that a
handful of ratings cannot drive a rate to 0 or 0.5. An observation pooled into several questions counts for its
`share` in the M-step (its shares sum to 1), so a rating is counted once however many questions it informs.
Rates stay below 0.5: above that, 👍 would mean "wrong", which no rater intends.

The policy's probabilities are rarely calibrated (at the sampling temperature the retrieval policy gives its top
answer about 0.4 where it is right about 0.7 of the time). With `fit_prior_power` the M-step also fits
`prior_power`, the exponent that makes the prior best predict the posteriors (a concave one-dimensional problem),
so the rate of wrong ratings is not asked to explain the policy's over- or under-confidence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

OTHER = "\x00other"  # the prior's bucket for every answer the question has no entry for
RATING = "rating"
_LOWEST_RATE, _HIGHEST_RATE = 1e-3, 0.49
_POWERS = (0.1, 10.0)  # the range prior_power is fitted in


@dataclass(frozen=True)
class SignalRates:
    """One kind of signal's error rates."""

    miss: float  # P(negative | the answer is right): a right answer rated 👎
    false_alarm: float  # P(positive | the answer is wrong): a wrong answer rated 👍

    @property
    def mean(self) -> float:
        """One number for reports: the average of the two error rates."""
        return (self.miss + self.false_alarm) / 2

    def likelihood_ratio(self, positive: bool) -> float:
        """P(observation | right) / P(observation | wrong)."""
        if positive:
            return (1 - self.miss) / self.false_alarm
        return self.miss / (1 - self.false_alarm)


@dataclass(frozen=True)
class Observation:
    key: str  # the answer it is about
    positive: bool  # 👍 (or a click on it, a thanks after it); False for 👎 and other negative signals
    kind: str = RATING
    weight: float = 1.0  # exponent of its likelihood ratio (sender caps scale it down)
    share: float = 1.0  # its weight in the rate estimate: 1 / the number of questions it is pooled into


@dataclass(frozen=True)
class Question:
    """One question's prior over answers (sums to at most 1; the rest is `other`) and its evidence."""

    prior: Mapping[str, float]
    observations: Sequence[Observation] = ()
    # How many answers the policy could give that `prior` does not name (retrieval: the rest of the bank). `other`
    # stands for all of them, so tempering treats it as that many answers sharing its mass — not as one answer
    # holding all of it, which with a spread policy made `other` the likeliest answer and every rating look wrong.
    unnamed: int = 1


@dataclass(frozen=True)
class NoiseEstimate:
    rates: dict[str, SignalRates]  # per kind, as estimated (or as given, for kinds not estimated)
    posteriors: list[dict[str, float]]  # per question: answer key -> P(it is the right answer)
    iterations: int
    converged: bool
    evidence: dict[str, float] = field(default_factory=dict)  # per kind: the observations' weight × share
    prior_power: float = 1.0  # as given, or as fitted

    def summary(self, kind: str = RATING) -> dict[str, float | int | bool] | None:
        """What a round records about one kind's rates; None when it had no observations."""
        if self.evidence.get(kind, 0.0) <= 0:
            return None
        rates = self.rates[kind]
        return {"rate": round(rates.mean, 4), "miss": round(rates.miss, 4),
                "false_alarm": round(rates.false_alarm, 4), "observations": round(self.evidence[kind], 2),
                "prior_power": round(self.prior_power, 3), "iterations": self.iterations, "converged": self.converged}


def posteriors(question: Question, rates: Mapping[str, SignalRates], prior_power: float = 1.0) -> dict[str, float]:
    """P(answer is the right one | evidence) for every answer in the prior or the evidence (not `other`)."""
    prior = tempered_prior(question, prior_power)
    log_mass = {key: math.log(p) for key, p in prior.items()}
    for o in question.observations:
        log_mass[o.key] += o.weight * math.log(rates[o.kind].likelihood_ratio(o.positive))
    top = max(log_mass.values())
    mass = {key: math.exp(value - top) for key, value in log_mass.items()}
    total = sum(mass.values())
    return {key: value / total for key, value in mass.items() if key != OTHER}


def tempered_prior(question: Question, power: float) -> dict[str, float]:
    """The prior over the question's answers plus `other`, tempered by `power` and normalised.

    An observed answer the prior does not name (no longer sampled, say) gets its equal part of the unnamed mass.
    """
    keys, log_each, log_count = _prior_terms(question)
    raised = np.exp(power * log_each + log_count)
    return dict(zip(keys, (raised / raised.sum()).tolist(), strict=True))


def _prior_terms(question: Question) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(keys, log of each key's untempered prior per answer, log of how many answers the key stands for).

    A named answer stands for itself; the unnamed mass is shared equally by the question's `unnamed` answers, of
    which the observed ones are keys of their own and `other` stands for the rest (tempered: count · p^power).
    """
    named = {key: max(float(p), 0.0) for key, p in question.prior.items()}
    observed = sorted({o.key for o in question.observations} - set(named))
    answers = max(question.unnamed, len(observed) + 1)
    rest = max(1.0 - sum(named.values()), 0.0)
    for key in [*observed, OTHER]:
        named[key] = rest / answers
    floor = 1e-12  # keeps log() finite; a zero-probability answer stays negligible
    log_each = np.log(np.maximum(np.fromiter(named.values(), float, len(named)), floor))
    log_count = np.zeros(len(named))
    log_count[-1] = math.log(answers - len(observed))  # `other` is last
    return list(named), log_each, log_count


def estimate(questions: Sequence[Question], start: Mapping[str, SignalRates], estimated: Iterable[str] = (RATING,),
             symmetric: bool = True, prior_power: float = 1.0, fit_prior_power: bool = False,
             prior_strength: float = 10.0, max_iterations: int = 100, tolerance: float = 1e-4) -> NoiseEstimate:
    """EM over every question: the kinds in `estimated` get their rates from the data, the others keep `start`'s.

    Args:
        start: every observed kind's starting (or fixed) rates.
        symmetric: one rate for both errors (miss = false_alarm), as when ratings are flipped at random.
        prior_power: the prior's exponent; with `fit_prior_power`, where its fit starts.
        prior_strength: pseudo-observations at the starting rate, per estimated kind.
    """
    rates = dict(start)
    estimated = set(estimated)
    start_power = prior_power
    found = [posteriors(q, rates, prior_power) for q in questions]
    iterations, converged = 0, not any(q.observations for q in questions)
    while not converged and iterations < max_iterations:
        iterations += 1
        updated = {kind: _maximise(questions, found, kind, start[kind], symmetric, prior_strength)
                   for kind in estimated if kind in rates}
        change = max((abs(updated[k].miss - rates[k].miss) + abs(updated[k].false_alarm - rates[k].false_alarm)
                      for k in updated), default=0.0)
        if fit_prior_power:
            fitted = _fit_power(questions, found, start_power, prior_strength)
            change = max(change, abs(math.log(fitted / prior_power)))
            prior_power = fitted
        rates.update(updated)
        found = [posteriors(q, rates, prior_power) for q in questions]
        converged = change < tolerance
    evidence: dict[str, float] = {}
    for q in questions:
        for o in q.observations:
            evidence[o.kind] = evidence.get(o.kind, 0.0) + o.weight * o.share
    return NoiseEstimate(rates, found, iterations, converged, evidence, prior_power)


def _fit_power(questions: Sequence[Question], found: Sequence[Mapping[str, float]], start: float,
               strength: float) -> float:
    """The exponent p maximising Σ_x Σ_a P(r_x = a | O_x) · log π_x(a; p) over the questions with evidence.

    log π_x(a; p) = p·log b_x(a) + log n_x(a) − logsumexp_a(p·log b_x(a) + log n_x(a)) with b the untempered prior
    per answer and n how many answers a key stands for (`other`: the unnamed ones), so up to a constant the
    objective is p·Σ_x E[log b_x] − Σ_x logsumexp(p·log b_x + log n_x), minus strength/2 · (log p − log start)² so
    that a few questions cannot swing it (the same pseudo-count as the rates'): concave in log p, maximised by a
    ternary search.
    """
    rows, expected = [], 0.0
    for question, posterior in zip(questions, found, strict=True):
        if not question.observations:
            continue  # the prior alone says nothing about its own calibration
        keys, log_each, log_count = _prior_terms(question)
        weights = {**posterior, OTHER: max(1.0 - sum(posterior.values()), 0.0)}
        expected += sum(weights[key] * value for key, value in zip(keys, log_each.tolist(), strict=True))
        rows.append((log_each, log_count))
    if not rows:
        return start
    width = max(len(log_each) for log_each, _ in rows)
    log_base, log_counts = np.zeros((len(rows), width)), np.full((len(rows), width), -np.inf)  # padding: no answer
    for i, (log_each, log_count) in enumerate(rows):
        log_base[i, :len(log_each)], log_counts[i, :len(log_count)] = log_each, log_count

    def objective(log_power: float) -> float:
        power = math.exp(log_power)
        scaled = power * log_base + log_counts
        top = scaled.max(axis=1, keepdims=True)
        penalty = strength / 2 * (log_power - math.log(start)) ** 2
        return power * expected - float((top[:, 0] + np.log(np.exp(scaled - top).sum(axis=1))).sum()) - penalty

    low, high = math.log(_POWERS[0]), math.log(_POWERS[1])
    for _ in range(40):
        left, right = low + (high - low) / 3, high - (high - low) / 3
        if objective(left) < objective(right):
            low = left
        else:
            high = right
    return math.exp((low + high) / 2)


def _maximise(questions: Sequence[Question], found: Sequence[Mapping[str, float]], kind: str, start: SignalRates,
              symmetric: bool, strength: float) -> SignalRates:
    """The M-step for one kind: expected wrong observations over expected observations, with pseudo-counts."""
    misses = rights = false_alarms = wrongs = 0.0
    for question, posterior in zip(questions, found, strict=True):
        for o in question.observations:
            if o.kind != kind:
                continue
            right = posterior[o.key]
            count = o.weight * o.share
            rights += count * right
            wrongs += count * (1 - right)
            if o.positive:
                false_alarms += count * (1 - right)
            else:
                misses += count * right
    if symmetric:
        rate = (misses + false_alarms + strength * start.mean) / (rights + wrongs + strength)
        return SignalRates(_clip(rate), _clip(rate))
    return replace(start, miss=_clip((misses + strength * start.miss) / (rights + strength)),
                   false_alarm=_clip((false_alarms + strength * start.false_alarm) / (wrongs + strength)))


def _clip(rate: float) -> float:
    return min(max(rate, _LOWEST_RATE), _HIGHEST_RATE)
