"""What the bot does with a customer's message or rating. The Rasa actions only translate to and from this."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from . import choices
from .answer_bank import Answer, render
from .config import FeedbackConfig, HandoffConfig
from .errors import RatingRefused, SignalRefused
from .handoff import REPEATED_THUMBS_DOWN, offers_person, person_button
from .implicit import ImplicitFeedback
from .log import Log, Turn, TurnRecord
from .log.records import CHOICE_KINDS
from .models.live import LiveModel
from .not_understood import NOT_UNDERSTOOD, NOT_UNDERSTOOD_TEXT, topic_buttons, understood
from .text import clean_text, storable_text

RATE_INTENT = "rate"
THUMBS = {1: "👍", 0: "👎"}
_TURN_ID = re.compile(r"^[0-9a-f]{32}$")

ASK_FOR_A_QUESTION = "I didn't catch a question there. What can I help you with — an order, a delivery, a return?"
THANKS_UP = "Thanks for rating! Glad that helped."
THANKS_DOWN = ("Thanks for telling me — sorry that missed the mark. Could you rephrase your question? "
               "You can also ask for a human colleague.")
THANKS_DOWN_AGAIN = ("Thanks for telling me — sorry, I keep missing the mark. You can rephrase your question, or "
                     "talk to a person from our customer-service team.")


@dataclass(frozen=True)
class Reply:
    """A bot message; `turn_id` is set when it is a rateable answer, `logged_turn_id` whenever a turn was logged."""

    text: str
    turn_id: str | None = None
    buttons: list[dict[str, str]] = field(default_factory=list)
    answer_id: str | None = None
    model_version: str | None = None
    logged_turn_id: str | None = None


class Assistant:
    def __init__(self, store: Log, live: LiveModel, max_ratings_per_minute: int | None = None,
                 handoff: HandoffConfig | None = None, implicit: ImplicitFeedback | None = None,
                 feedback: FeedbackConfig | None = None) -> None:
        self.store = store
        self.live = live
        self.max_ratings_per_minute = max_ratings_per_minute
        self.handoff = handoff or HandoffConfig()
        self.implicit = implicit  # None: no implicit signals (implicit.py)
        self.feedback = feedback or FeedbackConfig()

    def answer(self, sender_id: str, message_id: str | None, text: str, offer_person: bool = True,
               offer_choices: bool = True) -> Reply:
        """Answer a customer's question from the live model and log the turn.

        Below `model.min_score` the reply says the message was not understood and offers the closest topics and
        (with `offer_person`: the bot has the hand-off) a person (not_understood.py); that turn is logged too,
        without an answer and without rating buttons. A question similar to the one this sender was just answered
        records a `reask` on that answer first (implicit.py), before this turn becomes the sender's latest. When the
        model was unsure (`feedback.choices_up_front_margin`) and `offer_choices` (the bot has action_choose), the
        next-best answers come as buttons too (choices.py).
        """
        query = clean_text(text)
        if not query:
            return Reply(ASK_FOR_A_QUESTION)
        if self.implicit is not None:
            self.implicit.before_question(sender_id, query)
        model = self.live.current  # read the reference once: a swap mid-request cannot mix versions
        started = time.perf_counter()
        answered = model.answer(query)
        ok = understood(answered.score, self.live.model_config.min_score)
        reply_text = render(answered.text, query) if ok else NOT_UNDERSTOOD_TEXT
        answer_id, topic, key = ((answered.answer_id, answered.topic, answered.key) if ok
                                 else (None, NOT_UNDERSTOOD, NOT_UNDERSTOOD))
        latency_ms = (time.perf_counter() - started) * 1000
        turn_id = self.store.log_turn(TurnRecord(
            sender_id=sender_id, message_id=message_id, user_text=storable_text(text), answer_id=answer_id,
            answer_topic=topic, answer_text=reply_text, model_version=model.name,
            score=answered.score, probability=answered.probability,
            top_k=[{"answer_id": r.answer_id, "topic": r.topic, "cosine": round(r.cosine, 4),
                    "probability": round(r.probability, 4)} for r in answered.top_k],
            latency_ms=latency_ms, reply_key=key, writing=answered.writing if ok else None,
        ))
        if not ok:
            return Reply(reply_text, None, topic_buttons(answered, model.bank, offer_person), None, model.name,
                         turn_id)
        return Reply(reply_text, turn_id, rating_buttons(turn_id) + self._up_front_choices(turn_id, offer_choices),
                     answer_id, model.name, turn_id)

    def thanked(self, sender_id: str) -> None:
        """The customer said thanks or goodbye: a `thanks` signal on the answer just given, if any (implicit.py)."""
        if self.implicit is not None:
            self.implicit.thanked(sender_id)

    def asked_for_person(self, sender_id: str, reason: Any) -> None:
        """The customer asked for a person: an `asked_human` signal on the answer just given, if they asked
        themselves (reason `asked`) right after it (implicit.py)."""
        if self.implicit is not None:
            self.implicit.asked_for_person(sender_id, reason)

    def rate(self, sender_id: str, turn_id: Any, score: Any, offer_person: bool = True,
             offer_choices: bool = True) -> Reply:
        """Record a 👍/👎 for one of this sender's answers.

        The reply to a 👎 asks "Was it one of these?" with the turn's next-best answers and "None of these" (with
        `feedback.choices` > 0, `offer_choices`, and a turn not answered that way yet; choices.py). From
        `handoff.offer_after_thumbs_down` 👎 in the conversation on (and with `offer_person`), it also offers "Talk to
        a person" (reason repeated_thumbs_down). A 👍 on a question that put one the bot had just missed in other
        words also records `resolved` on the missed one (implicit.py, `feedback.resolved_weight`).

        Raises:
            RatingRefused: malformed turn id or score, unknown turn, another sender's turn, a turn that was not
                understood (nothing was answered), or too many
                ratings from this sender in the last minute.
        """
        if not isinstance(turn_id, str) or not _TURN_ID.match(turn_id):
            raise RatingRefused("the rating does not say which answer it is for")
        value = parse_score(score)
        turn = self.store.turn(turn_id)
        if turn is not None and turn.sender_id == sender_id and turn.reply_key == NOT_UNDERSTOOD:
            raise RatingRefused("that message was not answered, so there is no answer to rate")
        self.store.rate(turn_id, sender_id, value, self.max_ratings_per_minute)
        if value == 1:
            if turn is not None and turn.answer_id:
                self._settled(turn, turn.answer_id)
            return Reply(THANKS_UP)
        thumbs_down = sum(t.rating == 0 for t in self.store.conversation(sender_id))
        person = offer_person and offers_person(thumbs_down, self.handoff)
        offered = self._choices_after_thumbs_down(sender_id, turn_id) if offer_choices else []
        if offered:
            text = choices.AFTER_REPEATED_THUMBS_DOWN if person else choices.AFTER_THUMBS_DOWN
            return Reply(text, buttons=choices.choice_buttons(
                turn_id, offered, person=person_button(REPEATED_THUMBS_DOWN) if person else None))
        if person:
            return Reply(THANKS_DOWN_AGAIN, buttons=[person_button(REPEATED_THUMBS_DOWN)])
        return Reply(THANKS_DOWN)

    def choose(self, sender_id: str, turn_id: Any, answer_id: Any, offer_person: bool = True) -> Reply:
        """Record the customer's answer to "Was it one of these?" and answer them.

        A pick is recorded as a `choice` signal (reply_key = the picked answer) and answered with that answer's
        text; "None of these" as `none_of_these`, answered with an apology, a hint to rephrase and (with
        `offer_person` and a hand-off offered after 👎 at all) "Talk to a person": the 👎 and "None of these" are two
        refusals of the bot's answers, so the reason is repeated_thumbs_down. The signal is tied to the turn, and
        through it to the question, its sender and the model version that answered. A pick on a question that put
        one the bot had just missed in other words also records `resolved` on the missed one, as a 👍 does.

        The picked answer is *not* logged as a turn of its own and carries no 👍/👎: the signal already says that
        this customer found it right for that question (a strong 👍, `feedback.choice_weight`), and a second turn
        would count the same question twice in rounds, in served accuracy and in the live guard's per-version
        counts.

        Raises:
            SignalRefused: a malformed turn or answer id, no such turn, another sender's turn, a turn that was not
                offered choices (not rated 👎, not unsure, choices off, not understood), an answer that was not
                among those offered, a turn already answered that way, or over `privacy.max_ratings_per_minute`
                (shared with ratings); nothing is written.
        """
        malformed = choices.well_formed(turn_id, answer_id)
        if malformed:
            raise SignalRefused(malformed)
        turn = self.store.turn(turn_id)
        if turn is None:
            raise SignalRefused("there is no answer with that id")
        if turn.sender_id != sender_id:
            raise SignalRefused("that answer was given in another conversation")
        if not choices.is_offered(turn, self.feedback):
            raise SignalRefused("no choices were offered for that answer")
        picked = None
        if answer_id != choices.NONE_OF_THESE:
            picked = next((a for a in choices.offered_answers(turn, self.live.current.bank, self.feedback)
                           if a.id == answer_id), None)
            if picked is None:
                raise SignalRefused("that answer was not one of the choices offered")
        kind, key = ("choice", picked.id) if picked else ("none_of_these", None)
        self.store.record_signal(turn_id, sender_id, kind, key, self.max_ratings_per_minute)
        if picked is not None:
            self._settled(turn, picked.id)
            return Reply(render(picked.text, "" if turn.redacted else turn.user_text), answer_id=picked.id,
                         model_version=turn.model_version)
        if offer_person and self.handoff.offer_after_thumbs_down > 0:
            return Reply(choices.NONE_REPLY_PERSON, buttons=[person_button(REPEATED_THUMBS_DOWN)])
        return Reply(choices.NONE_REPLY)

    def _choices_after_thumbs_down(self, sender_id: str, turn_id: str) -> list[Answer]:
        """The answers to offer after a 👎 of this turn: none when choices are off or it was already answered."""
        turn = self.store.turn(turn_id)
        if turn is None or not choices.is_offered(turn, self.feedback) or self._answered(sender_id, turn_id):
            return []
        return choices.offered_answers(turn, self.live.current.bank, self.feedback)

    def _up_front_choices(self, turn_id: str, offer_choices: bool) -> list[dict[str, str]]:
        """Choice buttons to show with an answer the model was unsure about (read back from the logged turn, so the
        offer is exactly what `choose` will check)."""
        if not offer_choices or not choices.offers_up_front(self.feedback):  # no need to read the turn back
            return []
        turn: Turn | None = self.store.turn(turn_id)
        if turn is None or not choices.unsure(turn.top_k, self.feedback):
            return []
        offered = choices.offered_answers(turn, self.live.current.bank, self.feedback)
        return choices.choice_buttons(turn_id, offered, none_of_these=False) if offered else []

    def _settled(self, turn: Turn, answer_id: str) -> None:
        """The customer found `answer_id` right for `turn` (a 👍 or a pick): when `turn` put a question the bot had
        just missed in other words, a `resolved` signal on that one too (implicit.py; bank answer ids only, so a
        written reply's 👍 names the answer it was written from)."""
        if self.implicit is not None:
            self.implicit.settled(turn, answer_id)

    def _answered(self, sender_id: str, turn_id: str) -> bool:
        return any(s.turn_id == turn_id and s.kind in CHOICE_KINDS for s in self.store.signals(sender_id=sender_id))


def rating_buttons(turn_id: str) -> list[dict[str, str]]:
    """👍 / 👎 buttons whose payloads carry the turn id, so a rating lands on exactly this answer."""
    return [{"title": THUMBS[score],
             "payload": f"/{RATE_INTENT}" + json.dumps({"turn_id": turn_id, "score": score}, separators=(",", ":"))}
            for score in (1, 0)]


def parse_score(value: Any) -> int:
    """1 (👍) or 0 (👎) from an int, a whole float or a digit string; anything else is refused."""
    if isinstance(value, bool):
        raise RatingRefused("a rating is 1 (👍) or 0 (👎)")
    if isinstance(value, str):
        value = value.strip()
        if value not in ("0", "1"):
            raise RatingRefused("a rating is 1 (👍) or 0 (👎)")
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    raise RatingRefused("a rating is 1 (👍) or 0 (👎)")
