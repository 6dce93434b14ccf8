"""Implicit feedback: what a customer does right after an answer, read as a weak signal about that answer.

Three signals (issue 11), each with its weight in rsft.yml's `feedback:` section; a weight of 0 turns its signal
off (not detected, nothing recorded):

- `reask`: the next question is similar to the one just answered (the pretrained MiniLM's cosine of the two
  questions >= `reask_cosine`): the answer probably missed — a weak 👎;
- `asked_human`: the customer asks for a person right after an answer — a weak 👎. Only the customer's own request
  (reason `asked`): the "Talk to a person" buttons after a not-understood reply or repeated 👎 come with their own
  evidence (the reply was not an answer / was rated);
- `thanks`: the customer says thanks or goodbye right after an answer — a weak 👍.

"Right after" an answer: the sender's latest logged turn was answered (not a not-understood reply), was logged at
most `window_seconds` ago, and has no 👍/👎 from the sender — an explicit rating says more than what the customer did
next, so a rated answer gets no implicit signal on top.

Every signal goes through the log's `record_signal`, under the per-sender per-minute cap it shares with ratings. A
refusal (a sender flooding messages, a second implicit signal for the same turn) is logged at INFO and dropped: the
customer's message is still answered as usual, and nothing is written. The rounds' reward and the live guard read
the signals with their weights; this module only detects and records them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from .config import FeedbackConfig
from .errors import SignalRefused
from .handoff import ASKED, reason_from
from .log import IMPLICIT_KINDS, ConversationLog, Signal, SignalLog, Turn
from .not_understood import NOT_UNDERSTOOD
from .text import clean_text

log = logging.getLogger(__name__)

REASK, ASKED_HUMAN, THANKS = IMPLICIT_KINDS
Similarity = Callable[[str, str], float]  # cosine of two questions' embeddings, in [-1, 1]


class TurnsAndSignals(ConversationLog, SignalLog, Protocol):
    """The two parts of the log implicit feedback reads and writes."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ImplicitFeedback:
    """Detects and records the implicit signals of one serving process (built once, with the Assistant).

    Args:
        store: the log (turns to look back at, signals to record).
        settings: the `feedback:` section (weights, `reask_cosine`, `window_seconds`).
        max_per_minute: the per-sender cap of `privacy.max_ratings_per_minute` (None: no cap).
        similarity: how similar two questions are (`encoder_similarity()`); None turns `reask` off.
        clock: now, timezone-aware (tests move it past the window).
    """

    def __init__(self, store: TurnsAndSignals, settings: FeedbackConfig, max_per_minute: int | None = None,
                 similarity: Similarity | None = None, clock: Callable[[], datetime] = _utc_now) -> None:
        self.store = store
        self.settings = settings
        self.max_per_minute = max_per_minute
        self.similarity = similarity
        self.clock = clock

    def before_question(self, sender_id: str, question: str) -> Signal | None:
        """A new question (cleaned, not empty) arrives: `reask` on the answer just given when it is similar.

        Call it before the new turn is logged, so that the sender's latest turn is still the answer it is about.
        """
        if not question or self.settings.reask_weight <= 0 or self.similarity is None:
            return None
        turn = self.answer_just_given(sender_id)
        if turn is None or turn.redacted:  # a redacted question is no longer the customer's words
            return None
        earlier = clean_text(turn.user_text)
        if not earlier or self.similarity(question, earlier) < self.settings.reask_cosine:
            return None
        return self._record(turn, REASK)

    def asked_for_person(self, sender_id: str, reason: object) -> Signal | None:
        """The customer asked for a person (the hand-off's `reason` entity): `asked_human` when they asked
        themselves right after an answer."""
        if self.settings.asked_human_weight <= 0 or reason_from(reason) != ASKED:
            return None
        turn = self.answer_just_given(sender_id)
        return self._record(turn, ASKED_HUMAN) if turn is not None else None

    def thanked(self, sender_id: str) -> Signal | None:
        """The customer said thanks or goodbye: `thanks` on the answer just given."""
        if self.settings.thanks_weight <= 0:
            return None
        turn = self.answer_just_given(sender_id)
        return self._record(turn, THANKS) if turn is not None else None

    def answer_just_given(self, sender_id: str) -> Turn | None:
        """The sender's latest turn when this message comes "right after" it (see the module doc), else None."""
        latest = self.store.recent_turns(1, sender_id)
        if not latest:
            return None
        turn = latest[0]
        if turn.reply_key == NOT_UNDERSTOOD or turn.rating is not None:
            return None
        age = (self.clock() - datetime.fromisoformat(turn.created_at)).total_seconds()
        if age > self.settings.window_seconds:
            return None
        if self._has_implicit_signal(turn):  # the log would refuse it anyway, but the attempt would count
            return None
        return turn

    def _has_implicit_signal(self, turn: Turn) -> bool:
        return any(s.turn_id == turn.id and s.kind in IMPLICIT_KINDS
                   for s in self.store.signals(since=turn.created_at, sender_id=turn.sender_id))

    def _record(self, turn: Turn, kind: str) -> Signal | None:
        try:
            signal = self.store.record_signal(turn.id, turn.sender_id, kind, turn.reply_key, self.max_per_minute)
        except SignalRefused as refused:
            log.info("implicit signal %s on turn %s of %s not recorded: %s", kind, turn.id, turn.sender_id, refused)
            return None
        log.info("implicit signal %s on turn %s of %s", kind, turn.id, turn.sender_id)
        return signal


def encoder_similarity(max_chars: int = 1000) -> Similarity:
    """The cosine of two questions under the fixed pretrained MiniLM the rounds score with (loaded here, once).

    Imported here, not at the top: the web server imports this package's light modules and must not load torch.
    """
    from .models.encoder import embed, load_base_encoder

    encoder = load_base_encoder()

    def similarity(first: str, second: str) -> float:
        vectors = embed(encoder, [first, second], max_chars)  # (2, d), L2-normalised
        return float(vectors[0] @ vectors[1])

    return similarity
