"""Stage 6 — gate: may the candidate replace the live model?

Both are scored on data training never saw: the golden set's held-out questions (top-1 topic right or not, per
question) and the rated turns the collect stage kept out (agreement: a 👍 turn agrees when the model would give the
rated reply, by candidate key, again; a 👎 turn when it would give another one). Only the items where the two models
*differ* carry evidence, so every check is an exact paired test on them (stages/paired.py):

* promotion — `test: lower_bound` (default): the candidate is ahead on the held-out questions (more better than
  worse) and the (1 − `level`) lower confidence bound of its accuracy gain is at least `margin` (−1 point: not
  significantly worse by more than a point); `test: mcnemar`: significantly better (one-sided exact McNemar,
  p <= `level`) — the stricter test, which refused 26 of 133 benchmark rounds that were really better against 10
  (docs/benchmarks.md, "The gate: not worse rather than significantly better"). With `noisy_rate` below 1 (off
  by default), a round whose estimated rate of wrong ratings (stages/noise.py, recorded with the round) reaches it
  must also clear `noisy_margin`: it learned from careless ratings, so it needs more evidence to replace the live
  model (docs/benchmarks.md, "A stricter gate when the ratings are noisy");
* topics — a topic blocks promotion only when it is significantly worse (one-sided exact test on its changed
  questions, Holm-corrected across the topics with changes, at `topic_level`); one changed question of a small
  topic has p = 0.5 and never does;
* kept-out ratings — refused only when agreement is significantly worse (one-sided exact test, `rated_level`).

A refusal names every failed test with its numbers: changed items, better/worse, p-value and level.

A generative candidate (a writer) is judged on its written replies instead: topic-correct, similarity to the
labelled answer and faithfulness violations, on a capped sample of the held-out questions (stages/gate_written.py).
"""

from __future__ import annotations

from dataclasses import replace

from ..config import GateConfig
from ..evaluate import answered_right
from ..golden import GoldenQuestion
from ..log import Turn
from ..models.base import ResponsePolicy
from ..text import clean_text
from .gate_written import describe_written, written_checks, written_evidence, written_sample
from .paired import PairedCounts, better_p, fewest_wins, gain_lower_bound, gain_standard_error, holm, worse_p
from .records import CheckOutcome, GateEvidence, GateResult, turn_key


def gate(live: ResponsePolicy, candidate: ResponsePolicy, heldout: list[GoldenQuestion], rated_slice: list[Turn],
         config: GateConfig, seed: int = 0, rating_noise_rate: float | None = None) -> GateResult:
    """Compare `candidate` with `live`; the result says whether to promote and why.

    `seed` (the round's `sample.seed`) chooses the written gate's capped sample of held-out questions;
    `rating_noise_rate` is the round's estimated rate of wrong ratings (None: it had none), kept with the evidence.
    """
    if _writes(live) and _writes(candidate):
        questions = written_sample(heldout, config.max_written_questions, seed)
        outcomes = [model.writing_outcomes(questions) for model in (live, candidate)]  # type: ignore[attr-defined]
        return judge(replace(written_evidence(*outcomes, questions), rating_noise_rate=rating_noise_rate), config)
    live_right, candidate_right = answered_right(live, heldout), answered_right(candidate, heldout)
    topics = {}
    for topic in sorted({q.topic for q in heldout}):
        mine = [i for i, q in enumerate(heldout) if q.topic == topic]
        topics[topic] = PairedCounts.of([live_right[i] for i in mine], [candidate_right[i] for i in mine])
    rated = (PairedCounts.of(_agreement(live, rated_slice), _agreement(candidate, rated_slice)) if rated_slice
             else None)
    return judge(GateEvidence(PairedCounts.of(live_right, candidate_right), topics, rated,
                              rating_noise_rate=rating_noise_rate), config)


def judge(evidence: GateEvidence, config: GateConfig) -> GateResult:
    """The verdict from paired counts alone (no model): what `gate` returns, and what the benchmark recomputes."""
    if evidence.written is not None:
        checks = [*written_checks(evidence.written, config), *_topic_checks(evidence.topics, config.topic_level)]
        failed = [c for c in checks if not c.passed]
        reason = "; ".join(describe(c) for c in failed) if failed else _written_reason(checks, config)
        return GateResult(not failed, reason, evidence, checks)
    checks = [_promotion_check(evidence, config), *_topic_checks(evidence.topics, config.topic_level)]
    if evidence.rated is not None and config.rated_level > 0:
        p = worse_p(evidence.rated)
        checks.append(CheckOutcome("rated", "kept-out ratings", evidence.rated, p, config.rated_level,
                                   passed=p > config.rated_level))
    failed = [c for c in checks if not c.passed]
    reason = "; ".join(describe(c) for c in failed) if failed else _promotion_reason(checks, config)
    return GateResult(not failed, reason, evidence, checks)


def _promotion_check(evidence: GateEvidence, config: GateConfig) -> CheckOutcome:
    counts = evidence.heldout
    p = better_p(counts)
    if config.test == "lower_bound":
        noisy = _noisy(evidence.rating_noise_rate, config)
        margin = max(config.margin, config.noisy_margin) if noisy else config.margin
        return CheckOutcome("heldout", "held-out accuracy", counts, p, config.level,
                            _held_out_passes(counts, config.level, margin),
                            bound=gain_lower_bound(counts, config.level), margin=margin,
                            noisy_rate=evidence.rating_noise_rate if noisy else None)
    return CheckOutcome("heldout", "held-out accuracy", counts, p, config.level,
                        _held_out_passes(counts, config.level, None))


def _held_out_passes(counts: PairedCounts, level: float, margin: float | None) -> bool:
    """The promotion test on held-out counts: with a `margin`, the lower-bound test; without (`test: mcnemar`),
    significantly better. The verdict and a refusal's "it needed" both ask this one function."""
    if margin is None:
        return better_p(counts) <= level
    # level 1 always passes, as with McNemar; below it the candidate must also be ahead on the changed
    # questions, so a tie or an unchanged model never replaces the live one however wide the margin
    return level >= 1 or (gain_lower_bound(counts, level) >= margin - 1e-12 and counts.ahead)


def _what_it_needed(check: CheckOutcome) -> str:
    """For a refused held-out check: how many of its changed questions the candidate had to win, and the gain's
    standard error at this size — so an operator can tell a bad candidate from a held-out set too small to see it."""
    c = check.counts
    if c.discordant == 0:
        return "; the candidate answered every held-out question as the live model did"
    wins = fewest_wins(c.discordant, c.n, lambda counts: _held_out_passes(counts, check.level, check.margin))
    needed = (f"no split of its {c.discordant} changed questions would have passed" if wins is None else
              f"with {c.discordant} changed it needed {wins} better and {c.discordant - wins} worse "
              f"({(2 * wins - c.discordant) / c.n:+.1%})")
    text = f"; {needed}. The gain's standard error on these {c.n} held-out questions is ±{gain_standard_error(c):.1%}"
    if c.wins >= c.losses:  # level or ahead, refused for want of evidence: more questions would tell
        text += ": more held-out questions (the golden set's heldout split) let the gate see smaller gains"
    return text


def _noisy(rate: float | None, config: GateConfig) -> bool:
    """Whether the round's estimated rate of wrong ratings calls for `noisy_margin` (`noisy_rate` 1: never)."""
    return rate is not None and config.noisy_rate < 1 and rate >= config.noisy_rate


def _topic_checks(topics: dict[str, PairedCounts], level: float) -> list[CheckOutcome]:
    """One-sided "worse" tests for the topics with at least one changed question, Holm-adjusted together."""
    if level <= 0:
        return []
    tested = {topic: counts for topic, counts in topics.items() if counts.discordant}
    raw = {topic: worse_p(counts) for topic, counts in tested.items()}
    adjusted = holm(raw)
    return [CheckOutcome("topic", topic, tested[topic], raw[topic], level, adjusted[topic] > level,
                         adjusted_p=adjusted[topic]) for topic in sorted(tested)]


def describe(check: CheckOutcome) -> str:
    """One check in words, with its numbers; a failed one starts with which test failed."""
    if check.check.startswith("written"):
        return describe_written(check)
    c = check.counts
    changed = f"{c.wins} better, {c.losses} worse of the {c.discordant} changed (of {c.n})"
    if check.check == "heldout":
        head = (f"held-out accuracy {c.live_accuracy:.1%} -> {c.candidate_accuracy:.1%} ({c.gain:+.1%}), "
                f"{changed}")
        if check.level >= 1:  # the operator's "always promote": a bound at level 1 would be the largest gain possible
            body = f"level 1 promotes without a test (McNemar p = {check.p_value:.3g})"
        elif check.bound is not None:
            within = check.bound >= check.margin - 1e-12
            noisy = ("" if check.noisy_rate is None else
                     f" for a round whose estimated rate of wrong ratings {check.noisy_rate:.0%} is at or above "
                     f"gate.noisy_rate")
            body = (f"{1 - check.level:.0%} lower confidence bound of the gain {check.bound:+.1%} "
                    f"{'>=' if within else '<'} margin {check.margin:+.1%}{noisy} (McNemar p = {check.p_value:.3g})")
            if within and not check.passed:
                body += ", but the candidate is not ahead (it needs more better than worse)"
        else:
            sign = "<=" if check.passed else ">"
            body = f"exact McNemar one-sided p = {check.p_value:.3g} {sign} level {check.level:g}"
        if check.passed:
            return head + ": " + body
        return f"the held-out test failed: {head}: {body}{_what_it_needed(check)}"
    if check.check == "topic":
        text = (f"topic {check.subject} {c.live_accuracy:.0%} -> {c.candidate_accuracy:.0%}, {changed}: one-sided "
                f"p = {check.p_value:.3g}, Holm-adjusted p = {check.adjusted_p:.3g}")
        return text if check.passed else f"the topic test failed: {text} <= level {check.level:g}"
    text = (f"agreement with kept-out ratings {c.live_accuracy:.1%} -> {c.candidate_accuracy:.1%}, {changed}: "
            f"one-sided p = {check.p_value:.3g}")
    return text if check.passed else f"the kept-out ratings test failed: {text} <= level {check.level:g}"


def _promotion_reason(checks: list[CheckOutcome], config: GateConfig) -> str:
    parts = [describe(checks[0])]
    topics = [c for c in checks if c.check == "topic"]
    if config.topic_level > 0:
        smallest = min((c.adjusted_p or 1.0 for c in topics), default=1.0)
        parts.append(f"no topic significantly worse ({len(topics)} topics changed, smallest Holm-adjusted p = "
                     f"{smallest:.3g} > {config.topic_level:g})")
    parts += [describe(c) for c in checks if c.check == "rated"]
    return "; ".join(parts)


def _written_reason(checks: list[CheckOutcome], config: GateConfig) -> str:
    better = next(c for c in checks if c.check == "written_better")
    worse = [c for c in checks if c.check == "written_worse"]
    parts = [describe(better)]
    if worse:
        parts.append("not significantly worse on any measure (" + ", ".join(
            f"{c.subject} p = {c.p_value:.3g}" for c in worse) + f" > {config.writer_worse_level:g})")
    topics = [c for c in checks if c.check == "topic"]
    if config.topic_level > 0:
        smallest = min((c.adjusted_p or 1.0 for c in topics), default=1.0)
        parts.append(f"no topic significantly worse ({len(topics)} topics changed, smallest Holm-adjusted p = "
                     f"{smallest:.3g} > {config.topic_level:g})")
    return "; ".join(parts)


def _writes(model: ResponsePolicy) -> bool:
    """A policy that writes its replies (the generative kind) is judged on them."""
    return callable(getattr(model, "writing_outcomes", None))


def _agreement(model: ResponsePolicy, rated: list[Turn]) -> list[bool]:
    answers = model.answer_many([clean_text(t.user_text) or "?" for t in rated])
    return [(a.key == turn_key(t)) == (t.rating == 1) for a, t in zip(answers, rated, strict=True)]
