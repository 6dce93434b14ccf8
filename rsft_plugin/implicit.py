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

One more, about the question *before* an answer: `resolved` (`resolved_weight`, off by default). The bot missed a
question — it was rated 👎, answered "None of these", or not understood — and the customer put it in other words
(their next question, within `window_seconds`, similar by `resolved_cosine`) and gave that one's answer a 👍 or picked
one under "Was it one of these?": that answer is recorded for the first question as well (reply_key = it). The
questions a model misses are the ones it has most to learn from, and without this a round learns nothing about
them: their own evidence only says which answers were wrong.

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
from .log import IMPLICIT_KINDS, RESOLVED, SETTLING_KINDS, ConversationLog, Signal, SignalLog, Turn
from .not_understood import NOT_UNDERSTOOD
from .text import clean_text

log = logging.getLogger(__name__)

REASK, ASKED_HUMAN, THANKS = IMPLICIT_KINDS
_LOOK_BACK = 20  # turns of the sender read to find the one before a rated turn (a later one may follow it)
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

    def settled(self, turn: Turn, key: str) -> Signal | None:
        """The customer gave `turn`'s answer a 👍 or picked `key` for it: `resolved` with `key` on the question
        before it, when that one was missed and `turn` asked it again in other words (see the module doc)."""
        if self.settings.resolved_weight <= 0 or self.similarity is None or turn.redacted:
            return None
        missed = self._missed_just_before(turn)
        if missed is None:
            return None
        if self.similarity(clean_text(turn.user_text), clean_text(missed.user_text)) < self.settings.resolved_cosine:
            return None
        return self._record(missed, RESOLVED, key)

    def _missed_just_before(self, turn: Turn) -> Turn | None:
        """The sender's turn right before `turn`, when it came at most `window_seconds` earlier, the bot missed it
        (👎, "None of these", not understood), and no answer settled it yet (a pick, an earlier `resolved`)."""
        recent = self.store.recent_turns(_LOOK_BACK, turn.sender_id)
        position = next((i for i, t in enumerate(recent) if t.id == turn.id), None)
        if position is None or position + 1 >= len(recent):
            return None
        before = recent[position + 1]
        gap = (datetime.fromisoformat(turn.created_at) - datetime.fromisoformat(before.created_at)).total_seconds()
        if before.redacted or gap > self.settings.window_seconds or not clean_text(before.user_text):
            return None
        kinds = self._signal_kinds(before)
        if kinds & set(SETTLING_KINDS):
            return None
        missed = before.rating == 0 or before.reply_key == NOT_UNDERSTOOD or "none_of_these" in kinds
        return before if missed else None

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
        # the log would refuse a second implicit signal anyway, but the attempt would count against the cap
        return None if self._signal_kinds(turn) & set(IMPLICIT_KINDS) else turn

    def _signal_kinds(self, turn: Turn) -> set[str]:
        """The kinds of the signals already recorded about `turn`."""
        return {s.kind for s in self.store.signals(since=turn.created_at, sender_id=turn.sender_id)
                if s.turn_id == turn.id}

    def _record(self, turn: Turn, kind: str, key: str | None = None) -> Signal | None:
        try:
            signal = self.store.record_signal(turn.id, turn.sender_id, kind, key or turn.reply_key,
                                              self.max_per_minute)
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
