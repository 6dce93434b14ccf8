"""Stage 6 — gate: may the candidate replace the live model?

Both are scored on data training never saw: the golden set's held-out questions (top-1 topic accuracy, overall
and per topic) and the rated turns the collect stage kept out (agreement: a 👍 turn agrees when the model would
give the rated reply, by candidate key, again; a 👎 turn when it would give another one). The candidate is
promoted only when its held-out accuracy beats the live model's by `min_improvement`, no topic drops by more than
`topic_tolerance`, and agreement with the kept-out ratings drops by no more than `rated_tolerance`.
"""

from __future__ import annotations

from ..config import GateConfig
from ..evaluate import EvalReport, evaluate
from ..golden import GoldenQuestion
from ..log import Turn
from ..models.base import ResponsePolicy
from ..text import clean_text
from .records import GateResult, turn_key


def gate(live: ResponsePolicy, candidate: ResponsePolicy, heldout: list[GoldenQuestion], rated_slice: list[Turn],
         config: GateConfig) -> GateResult:
    """Compare `candidate` with `live`; the result says whether to promote and why."""
    live_eval, candidate_eval = evaluate(live, heldout), evaluate(candidate, heldout)
    per_topic = {topic: {"live": live_eval.per_topic[topic].accuracy,
                         "candidate": candidate_eval.per_topic[topic].accuracy} for topic in live_eval.per_topic}
    rated_live, rated_candidate = _agreement(live, rated_slice), _agreement(candidate, rated_slice)
    reasons = _refusals(live_eval, candidate_eval, per_topic, rated_live, rated_candidate, config)
    gain = candidate_eval.accuracy - live_eval.accuracy
    reason = ("; ".join(reasons) if reasons else
              f"held-out accuracy {live_eval.accuracy:.1%} -> {candidate_eval.accuracy:.1%} ({gain:+.1%}), "
              f"no topic dropped more than {config.topic_tolerance:.0%}")
    return GateResult(not reasons, reason, live_eval.accuracy, candidate_eval.accuracy, per_topic, rated_live,
                      rated_candidate, len(rated_slice))


def _refusals(live: EvalReport, candidate: EvalReport, per_topic: dict[str, dict[str, float]],
              rated_live: float | None, rated_candidate: float | None, config: GateConfig) -> list[str]:
    reasons = []
    gain = candidate.accuracy - live.accuracy
    if gain < config.min_improvement:
        reasons.append(f"held-out accuracy {live.accuracy:.1%} -> {candidate.accuracy:.1%} ({gain:+.1%}) is below "
                       f"the required gain of {config.min_improvement:+.1%}")
    dropped = {t: a["live"] - a["candidate"] for t, a in per_topic.items()
               if a["live"] - a["candidate"] > config.topic_tolerance + 1e-9}
    if dropped:
        worst = ", ".join(f"{t} -{d:.0%}" for t, d in sorted(dropped.items(), key=lambda item: -item[1])[:5])
        reasons.append(f"{len(dropped)} topic(s) dropped more than {config.topic_tolerance:.0%}: {worst}")
    if rated_live is not None and rated_candidate is not None and \
            rated_live - rated_candidate > config.rated_tolerance + 1e-9:
        reasons.append(f"agreement with kept-out ratings fell {rated_live:.1%} -> {rated_candidate:.1%}")
    return reasons


def _agreement(model: ResponsePolicy, rated: list[Turn]) -> float | None:
    if not rated:
        return None
    answers = model.answer_many([clean_text(t.user_text) or "?" for t in rated])
    agree = [(a.key == turn_key(t)) == (t.rating == 1) for a, t in zip(answers, rated, strict=True)]
    return sum(agree) / len(agree)
