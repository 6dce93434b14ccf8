"""“Was it one of these?”: the next-best answers offered for a turn, their buttons, and how a click is read.

After a 👎 (or, with `feedback.choices_up_front_margin`, with an answer the live model was unsure about) the bot
offers the turn's next-best answers as buttons, plus "None of these" — the convention of Rasa's two-stage fallback.
What is offered is computed from the *stored* turn alone (its `top_k`, the answer it served, its rating), never
stored itself: a click is checked later by computing the same set again (`is_offered`, `offered_answers`).

A button's payload is `/choose{"turn_id":"<32 hex>","answer_id":"<answer id>"}`; "None of these" carries
`"answer_id":"none"` (NONE_OF_THESE; no bank answer may be called that — a bank id "none" would never be offered).
`Assistant.choose` validates a click and records it in the log as a `choice` signal (reply_key = the picked answer
id) or `none_of_these` (reply_key None). The Rasa intent is `choose` (entities turn_id, answer_id) → action_choose;
a bot whose domain has no `action_choose` is offered nothing (rasa/actions.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from .answer_bank import Answer, AnswerBank
from .config import FeedbackConfig
from .log import Turn
from .not_understood import NOT_UNDERSTOOD

CHOOSE_INTENT = "choose"
CHOOSE_ACTION = "action_choose"  # a bot whose domain lacks it is offered no choices
NONE_OF_THESE = "none"  # the answer_id of the "None of these" button
NONE_TITLE = "None of these"

ASK_WHICH = "Was it one of these?"
AFTER_THUMBS_DOWN = f"Thanks for telling me — sorry that missed the mark. {ASK_WHICH}"
AFTER_REPEATED_THUMBS_DOWN = (f"Thanks for telling me — sorry, I keep missing the mark. {ASK_WHICH} "
                              "You can also talk to a person from our customer-service team.")
NONE_REPLY = ("Sorry I couldn't find the right answer. Could you rephrase your question with a few more details "
              "(what you ordered, what happened)?")
NONE_REPLY_PERSON = NONE_REPLY + " You can also talk to a person from our customer-service team."

_PREFIX = f"/{CHOOSE_INTENT}"
_TURN_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_ANSWER_ID = 200  # longer is not an answer id of any bank: refused before the log is asked


def top_two_margin(top_k: Iterable[dict[str, Any]]) -> float | None:
    """How far apart the two most probable answers of a stored top_k are (None with fewer than two)."""
    probabilities = sorted((float(k["probability"]) for k in top_k if isinstance(k.get("probability"), int | float)),
                           reverse=True)
    return probabilities[0] - probabilities[1] if len(probabilities) >= 2 else None


def offers_up_front(settings: FeedbackConfig) -> bool:
    """Whether these settings ever offer the choices with an answer itself (choices on and a margin above 0)."""
    return settings.choices > 0 and settings.choices_up_front_margin > 0


def unsure(top_k: Iterable[dict[str, Any]], settings: FeedbackConfig) -> bool:
    """Whether the choices go with the answer itself: its top two were closer than `choices_up_front_margin`."""
    if not offers_up_front(settings):
        return False
    margin = top_two_margin(top_k)
    return margin is not None and margin < settings.choices_up_front_margin


def is_offered(turn: Turn, settings: FeedbackConfig) -> bool:
    """Whether the turn was offered choices: its sender rated it 👎, or the model was unsure (up-front mode)."""
    if settings.choices == 0 or not turn.answer_id or turn.reply_key == NOT_UNDERSTOOD:
        return False
    return turn.rating == 0 or unsure(turn.top_k, settings)


def offered_answers(turn: Turn, bank: AnswerBank, settings: FeedbackConfig) -> list[Answer]:
    """The first `feedback.choices` answers of the turn's top_k other than the one it served, closest first.

    Answers no longer in the bank are skipped, and so is one whose button title repeats an earlier one (the
    customer could not tell them apart). At most `model.top_k - 1` exist: the top_k holds the served answer too.
    """
    served = {turn.answer_id, turn.reply_key}
    offered: list[Answer] = []
    for ranked in turn.top_k:
        answer_id = ranked.get("answer_id") if isinstance(ranked, dict) else None
        if not isinstance(answer_id, str) or answer_id in served or answer_id == NONE_OF_THESE:
            continue
        try:
            answer = bank.get(answer_id)
        except KeyError:
            continue
        if all(a.id != answer.id and a.display_title != answer.display_title for a in offered):
            offered.append(answer)
        if len(offered) == settings.choices:
            break
    return offered


def choose_payload(turn_id: str, answer_id: str) -> str:
    """The payload of one choice button (Rasa's /intent{entities} syntax, bypassing NLU)."""
    return _PREFIX + json.dumps({"turn_id": turn_id, "answer_id": answer_id}, separators=(",", ":"))


def choice_buttons(turn_id: str, answers: list[Answer], none_of_these: bool = True,
                   person: dict[str, str] | None = None) -> list[dict[str, str]]:
    """One button per offered answer (its customer-facing title), then "None of these" and `person`."""
    buttons = [{"title": a.display_title, "payload": choose_payload(turn_id, a.id)} for a in answers]
    if none_of_these:
        buttons.append({"title": NONE_TITLE, "payload": choose_payload(turn_id, NONE_OF_THESE)})
    return [*buttons, person] if person else buttons


def parse_choice(payload: Any) -> tuple[str, str] | None:
    """(turn_id, answer_id) of a choice button's payload; None for any other payload (simulated customers)."""
    if not isinstance(payload, str) or not payload.startswith(_PREFIX + "{"):
        return None
    try:
        entities = json.loads(payload[len(_PREFIX):])
    except ValueError:
        return None
    if not isinstance(entities, dict):
        return None
    turn_id, answer_id = entities.get("turn_id"), entities.get("answer_id")
    return (turn_id, answer_id) if isinstance(turn_id, str) and isinstance(answer_id, str) else None


def pick(offered_topics: list[tuple[str, str]], label: str) -> str:
    """What a simulated customer clicks: the first offered answer whose topic is the question's label, else
    "None of these". `offered_topics` holds (answer_id, topic) in button order."""
    return next((answer_id for answer_id, topic in offered_topics if topic == label), NONE_OF_THESE)


def well_formed(turn_id: Any, answer_id: Any, what: str = "choice") -> str | None:
    """Why a click's entities (or an operator's label: `what`) cannot name an answer for a turn (None when they
    can): checked before the log is asked."""
    if not isinstance(turn_id, str) or not _TURN_ID.match(turn_id):
        return f"the {what} does not say which answer it is for"
    if not isinstance(answer_id, str) or not answer_id.strip() or len(answer_id) > MAX_ANSWER_ID:
        return f"the {what} does not name an answer"
    return None
