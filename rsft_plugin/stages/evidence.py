"""What customers told us about answers, as one list of weighted votes for the score stage.

A 👍/👎 is one vote of weight 1. Besides ratings (issue 11, items 1 and 2):

    choice          the customer picked answer a under "Was it one of these?"   a 👍 on a, weight choice_weight
    none_of_these   none of the offered answers was it                          a 👎 on each offered, none_weight
    reask           asked a similar question again right after the answer       a 👎 on it, reask_weight
    asked_human     asked for a person right after the answer                   a 👎 on it, asked_human_weight
    thanks          said thanks or goodbye right after the answer               a 👍 on it, thanks_weight
    resolved        the bot missed the question; asked again in other words,    a 👍 on that answer for this
                    the customer rated an answer 👍 or picked one               question, resolved_weight (a pick)
    grounding       rated a written reply (generative kind), or an implicit     the same on the bank answer it was
                    signal about one                                            written from, × grounding_weight
    label           an operator said which answer was right (labels.py)        a 👍 on it, label_weight (a pick);
                                                                                the turn's own ratings and other
                                                                                signals no longer count

A weight of 0 leaves the signal out. Each vote carries its kind: the noise model gives ratings, choices and implicit
signals their own error rates, and only explicit evidence (a 👍 or a pick; with `score.trust_posterior`, also a
rated answer the noise model finds right despite a 👎) can make an answer *trusted* — a polite "thanks" moves an
answer's rating but never makes it a reference for others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..config import FeedbackConfig
from ..log import LABEL, Signal, Turn
from ..text import clean_text
from .noise import RATING
from .records import turn_key

CHOICE = "choice"  # the noise model's kind for picks and "None of these"
IMPLICIT = "implicit"  # the noise model's kind for reask, asked_human, thanks
EXPLICIT = (RATING, CHOICE)  # the kinds that can make an answer trusted

OfferedKeys = Callable[[Signal], list[str]]  # the answers a "None of these" turned down


@dataclass(frozen=True)
class Evidence:
    question: str  # the customer's question, as the score stage embeds it
    sender: str
    key: str  # the answer it is about
    positive: bool
    weight: float  # how many 👍 / 👎 it counts for
    kind: str  # RATING | CHOICE | IMPLICIT
    turn_id: str
    text: str | None = None  # the reply it is about, when the log gives it (a written reply: Log.rated_turns)


def unlabelled(rated_turns: Iterable[Turn], signals: Iterable[Signal], config: FeedbackConfig) -> list[Turn]:
    """The rated turns whose rating still counts: those no operator labelled (with `label_weight` > 0)."""
    labelled = labels_in_force(signals, config)
    return [t for t in rated_turns if t.id not in labelled]


def rating_evidence(rated_turns: Iterable[Turn]) -> list[Evidence]:
    """Every 👍/👎 as a vote of weight 1."""
    return [Evidence(clean_text(t.user_text), t.sender_id, turn_key(t), bool(t.rating), 1.0, RATING, t.id,
                     t.answer_text)
            for t in rated_turns if t.rating is not None and turn_key(t)]


def grounding_evidence(rated_turns: Iterable[Turn], weight: float) -> list[Evidence]:
    """Every 👍/👎 on a written reply as a rating of the bank answer it was written from (the turn's `answer_id`, its
    top grounding answer), at `weight` (0: none).

    Why: the retriever picks that answer, and a round tunes the retriever on bank answers; without this, what
    customers say about written replies reaches it only through the replies' texts. Serving keeps a written reply on
    its grounding's topic (`generative.guard_topic`), so a 👎 on the reply is mostly a 👎 on the topic it was given.
    A rating, so explicit: a 👍 can make the grounding answer trusted.
    """
    if weight <= 0:
        return []
    return [Evidence(clean_text(t.user_text), t.sender_id, grounding, bool(t.rating), weight, RATING, t.id)
            for t in rated_turns if t.rating is not None and (grounding := written_from(turn_key(t), t.answer_id))]


def written_from(served_key: str | None, answer_id: str | None) -> str | None:
    """The bank answer a turn's reply was written from, when the reply was written (its key is not its answer's
    id); None for a bank answer served as itself (retrieval, a writer's fallback) or a turn without an answer."""
    return answer_id if answer_id and served_key != answer_id else None


def known_labels(signals: Iterable[Signal], bank_ids: Iterable[str]) -> list[Signal]:
    """`signals` without operator labels naming an answer the live bank lacks (added in the console, not published
    yet): such a label counts from the round after the publication, and until then the turn keeps its own evidence."""
    known = set(bank_ids)
    return [s for s in signals if s.kind != LABEL or s.reply_key in known]


def labels_in_force(signals: Iterable[Signal], config: FeedbackConfig) -> dict[str, Signal]:
    """turn id -> the newest operator label of that turn (`signals` oldest first, as the log reads them); none when
    `label_weight` is 0 (labels ignored)."""
    if config.label_weight <= 0:
        return {}
    return {s.turn_id: s for s in signals if s.kind == LABEL and s.reply_key}


def signal_evidence(signals: Iterable[Signal], config: FeedbackConfig, offered: OfferedKeys) -> list[Evidence]:
    """Choices, implicit signals and labels as weighted votes (see the module docstring); weight-0 kinds are left
    out. A labelled turn's only vote is its newest label's (with `label_weight` > 0): the operator read what the
    customer said and did about that answer (drop its ratings too: `unlabelled`)."""
    signals = list(signals)
    labels = labels_in_force(signals, config)
    votes = []
    for signal in signals:
        question = clean_text(signal.user_text or "")
        if not question:  # a redacted-away or empty question cannot be matched to prompts
            continue
        if signal.turn_id in labels and signal is not labels[signal.turn_id]:
            continue
        for key, positive, weight, kind in _votes_of(signal, config, offered):
            if weight > 0 and key:
                votes.append(Evidence(question, signal.sender_id, key, positive, weight, kind, signal.turn_id))
    return votes


Vote = tuple[str | None, bool, float, str]  # (answer key, positive, weight, kind)


def _votes_of(signal: Signal, config: FeedbackConfig, offered: OfferedKeys) -> list[Vote]:
    if signal.kind == "choice":
        return [(signal.reply_key, True, config.choice_weight, CHOICE)]
    if signal.kind == "none_of_these":
        return [(key, False, config.none_weight, CHOICE) for key in offered(signal)]
    if signal.kind == "resolved":  # explicit: the customer chose that answer, for a question put in other words
        return [(signal.reply_key, True, config.resolved_weight, CHOICE)]
    if signal.kind == LABEL:  # explicit, as a pick: an operator named the right answer
        return [(signal.reply_key, True, config.label_weight, CHOICE)]
    implicit = {"reask": (False, config.reask_weight), "asked_human": (False, config.asked_human_weight),
                "thanks": (True, config.thanks_weight)}
    if signal.kind in implicit:
        positive, weight = implicit[signal.kind]
        served = signal.reply_key or signal.served_key
        votes = [(served, positive, weight, IMPLICIT)]
        if grounding := written_from(served, signal.served_answer_id):  # a written reply: its grounding too
            votes.append((grounding, positive, weight * config.grounding_weight, IMPLICIT))
        return votes
    return []  # a kind this version does not know (a newer writer): no vote
