"""The gate for written replies (the generative kind): not worse on any of three measures, better on one.

Both writers answer the same held-out golden questions (at most `gate.max_written_questions`, chosen from the
questions' text and the round's seed: see `written_sample`). Per question and measure the two replies are paired,
and only the questions where they differ carry evidence:

* topic-correct (the reply's nearest bank answer has the labelled topic) — exact McNemar, as the retrieval gate;
* violations (the reply states an amount, duration, URL, email or phone number its grounding does not) — exact
  McNemar on faithful vs not: an exact paired test of the two violation rates;
* similarity to the labelled answer (fixed MiniLM cosine) — the **sign test**: of the questions where the
  candidate's reply is more / less similar (by more than 1e-6; an unchanged reply ties and drops out, as concordant
  pairs do in McNemar), the count of "more" is Binomial(changed, 1/2) under "no difference". It is exact at any
  sample size and assumes nothing about the shape of the differences — cosines are bounded and skewed, and with the
  20–40 questions a CPU can write in a round a t-bound would rest on a normal approximation and a bootstrap bound
  would be neither exact nor reproducible without its own seed. It ignores how large each change is, so "better on
  similarity" also requires the mean to rise.

Rule: refuse when any measure is significantly worse (one-sided p <= `gate.writer_worse_level`, each measure at
that level: a refusal needs only one), or when none is significantly better — the smallest of the three one-sided
"better" p-values, Holm-adjusted for the three (= 3 × p), must be <= `gate.level`. Per-topic drops are checked as
for retrieval (`gate.topic_level`). `gate.test`/`gate.margin` and the kept-out ratings check apply to retrieval only:
ratings were given to other replies than the ones a new writer writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..config import GateConfig
from ..generative.quality import WrittenOutcome, quality_of
from ..golden import GoldenQuestion
from .paired import PairedCounts, better_p, holm, worse_p
from .records import CheckOutcome, GateEvidence, WrittenEvidence
from .seeding import content_share

# measure -> (the evidence's field, the test's name)
MEASURES = {"topic-correct": ("topic", "exact McNemar"), "similarity": ("similarity", "sign test"),
            "violations": ("faithful", "exact McNemar")}
_VALUE = {"topic-correct": "topic_correct", "similarity": "similarity", "violations": "violations"}


def written_sample(heldout: Sequence[GoldenQuestion], limit: int, seed: int) -> list[GoldenQuestion]:
    """At most `limit` held-out questions (0: all), the same for the same questions and seed whatever their order.

    Topics take turns (each topic's questions in the order of a stable coin from their text), so a small sample
    still covers as many topics as it can instead of the largest ones.
    """
    if limit <= 0 or len(heldout) <= limit:
        return list(heldout)
    by_topic: dict[str, list[GoldenQuestion]] = {}
    for question in sorted(heldout, key=lambda q: (content_share(seed, "gate", q.question), q.question)):
        by_topic.setdefault(question.topic, []).append(question)
    topics = sorted(by_topic, key=lambda t: (content_share(seed, "gate-topic", t), t))
    chosen: list[GoldenQuestion] = []
    depth = 0
    while len(chosen) < limit:
        chosen += [by_topic[t][depth] for t in topics if depth < len(by_topic[t])][: limit - len(chosen)]
        depth += 1
    return chosen


def written_evidence(live: Sequence[WrittenOutcome], candidate: Sequence[WrittenOutcome],
                     questions: Sequence[GoldenQuestion]) -> GateEvidence:
    """Paired counts for the three measures (and topic-correct per topic) from both writers' outcomes."""
    if not len(live) == len(candidate) == len(questions):
        raise ValueError(f"{len(live)} live and {len(candidate)} candidate outcomes for {len(questions)} questions")
    topic = PairedCounts.of([o.topic_right for o in live], [o.topic_right for o in candidate])
    topics = {}
    for name in sorted({q.topic for q in questions}):
        mine = [i for i, q in enumerate(questions) if q.topic == name]
        topics[name] = PairedCounts.of([live[i].topic_right for i in mine], [candidate[i].topic_right for i in mine])
    written = WrittenEvidence(
        topic=topic,
        similarity=PairedCounts.of_scores([o.similarity for o in live], [o.similarity for o in candidate]),
        faithful=PairedCounts.of([o.faithful for o in live], [o.faithful for o in candidate]),
        live=quality_of(live).to_dict(), candidate=quality_of(candidate).to_dict())
    return GateEvidence(topic, topics, None, written)


def written_checks(written: WrittenEvidence, config: GateConfig) -> list[CheckOutcome]:
    """One "worse" test per measure (when `writer_worse_level` > 0), then the Holm-adjusted "better on one" test."""
    checks = []
    if config.writer_worse_level > 0:
        for measure, (field, _) in MEASURES.items():
            counts = getattr(written, field)
            p = worse_p(counts)
            checks.append(_check("written_worse", measure, written, counts, p, config.writer_worse_level,
                                 p > config.writer_worse_level))
    raw = {measure: _better_p(written, measure) for measure in MEASURES}
    adjusted = holm(raw)
    best = min(MEASURES, key=lambda m: (adjusted[m], raw[m], list(MEASURES).index(m)))
    checks.append(_check("written_better", best, written, getattr(written, MEASURES[best][0]), raw[best],
                         config.level, adjusted[best] <= config.level, adjusted_p=adjusted[best]))
    return checks


def _better_p(written: WrittenEvidence, measure: str) -> float:
    counts = getattr(written, MEASURES[measure][0])
    if measure == "similarity" and written.candidate["similarity"] <= written.live["similarity"]:
        return 1.0  # more replies closer but a lower mean: a few large losses outweigh them, not "better"
    return better_p(counts)


def _check(kind: str, measure: str, written: WrittenEvidence, counts: PairedCounts, p: float, level: float,
           passed: bool, **extra: Any) -> CheckOutcome:
    key = _VALUE[measure]
    return CheckOutcome(kind, measure, counts, p, level, passed, live_value=float(written.live[key]),
                        candidate_value=float(written.candidate[key]), **extra)


def describe_written(check: CheckOutcome) -> str:
    """A written measure's test in words, with its numbers; a failed one starts with which test failed."""
    c, measure = check.counts, check.subject
    test = MEASURES[measure][1]
    if measure == "similarity":
        values = f"mean similarity {check.live_value:.3f} -> {check.candidate_value:.3f}"
        changed = f"{c.wins} closer, {c.losses} further of the {c.discordant} changed (of {c.n})"
    else:
        values = f"{measure} {check.live_value:.1%} -> {check.candidate_value:.1%}"
        changed = f"{c.wins} better, {c.losses} worse of the {c.discordant} changed (of {c.n})"
    if check.check == "written_worse":
        text = f"{values}, {changed}: {test} one-sided p (worse) = {check.p_value:.3g}"
        return text if check.passed else f"the written {measure} test failed: {text} <= level {check.level:g}"
    text = (f"{values}, {changed}: {test} one-sided p (better) = {check.p_value:.3g}, Holm-adjusted over the three "
            f"measures p = {check.adjusted_p:.3g}")
    if check.passed:
        return f"better on one ({measure}): {text} <= level {check.level:g}"
    return f"the written better-on-one test failed: no measure significantly better; best is {text} > level " \
           f"{check.level:g}"
