"""The reply to a message the live model cannot match: say so, offer the closest topics and a person.

When the best answer's score (retrieval: cosine) is below `model.min_score`, an answer would be a confident guess
("asdfghjkl" scored 0.17 and got the damaged-item answer). Instead the bot says it did not understand and shows
the closest topics as buttons whose payload is the topic's customer-facing title, a question the model then
answers like any other, plus "Talk to a person" (the `human_handoff` intent with reason `low_score`, handoff.py).
The turn is still logged, with reply_key `not_understood` and its alternatives, so operators see it and rounds can
learn from the question; it carries no rating buttons. bench/out_of_scope.py measures the threshold's trade-off.
"""

from __future__ import annotations

from .answer_bank import AnswerBank
from .handoff import LOW_SCORE, person_button
from .models.base import Answered

NOT_UNDERSTOOD = "not_understood"  # the logged turn's reply_key and answer_topic
NOT_UNDERSTOOD_TEXT = ("Sorry, I didn't understand that. Is your question about one of these? "
                       "You can also rephrase it, or talk to a person.")


def understood(score: float, min_score: float) -> bool:
    """Whether a best-answer score is high enough to answer with."""
    return score >= min_score


def topic_buttons(answered: Answered, bank: AnswerBank, offer_person: bool = True) -> list[dict[str, str]]:
    """One button per distinct alternative in the answer's top-k (closest first), then "Talk to a person" (unless
    the bot has no hand-off)."""
    buttons: list[dict[str, str]] = []
    for ranked in answered.top_k:
        try:
            title = bank.get(ranked.answer_id).display_title if ranked.answer_id else ""
        except KeyError:
            continue
        if title and all(b["title"] != title for b in buttons):
            buttons.append({"title": title, "payload": title})
    return [*buttons, person_button(LOW_SCORE)] if offer_person else buttons
