"""Talking to a person: the hand-off record, the contact its promise needs, and the operators' queue.

The bot promises that a colleague will reply by email, so a hand-off is only honest when it is recorded and has an
address to reply to:

1. the customer asks (`asked`), or presses "Talk to a person" on a not-understood reply (`low_score`) or on the
   reply to their repeated 👎 (`repeated_thumbs_down`): `HandoffDesk.request` records an open hand-off with the
   live model version, and the bot asks for an email (Rasa's `handoff_form`);
2. `read_contact` checks the reply: an email, a refusal ("no", "cancel", ...) or neither (asked again);
3. `HandoffDesk.record_contact` stores the email (or that the customer declined) and returns what the bot says
   next — only now, and only what will really happen;
4. operators list the queue in the console and take and close hand-offs (`queue`, `take`, `close`).

The contact is personal data: exports redact it, `rsft forget` deletes it with the rest of the conversation, and
retention redacts it like the raw text of turns. The Rasa actions (rasa/actions.py) and the console's routes only
translate to and from these functions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import HandoffConfig
from .errors import InputError, NotFound
from .log import HANDOFF_STATUSES, Handoff, HandoffLog, VersionHandoffs

ASKED, REPEATED_THUMBS_DOWN, LOW_SCORE = "asked", "repeated_thumbs_down", "low_score"
HANDOFF_INTENT = "human_handoff"
HANDOFF_ACTION = "action_handoff"  # a bot whose domain lacks it gets no "Talk to a person" buttons
PERSON_BUTTON_TITLE = "Talk to a person"
OPERATOR = "operator"  # who took or closed a hand-off: the console has one shared operator login, no names

RECORDED = "Sure — I'll pass your conversation on to a colleague from our customer-service team."
INVALID_CONTACT = ("That doesn't look like an email address. Please type it like name@example.com — "
                   "or type \"no\" if you'd rather not give one.")

_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
                    r"[A-Za-z]{2,63}")
_DECLINES = {"no", "nope", "nah", "no thanks", "no thank you", "cancel", "stop", "skip", "never mind", "nevermind",
             "i'd rather not", "rather not", "don't", "dont", "no way", "none", "not now", "forget it", "quit"}
_DECLINE_STARTS = ("no ", "nope ", "cancel", "don't want", "i don't want", "i'd rather not", "i would rather not")


@dataclass(frozen=True)
class ContactAnswer:
    """What a reply to "which email?" was: `email` (with the address), `declined`, or `invalid`."""

    kind: str
    email: str | None = None


def read_contact(text: Any) -> ContactAnswer:
    """One email address in the reply (alone or in a sentence), a refusal, or neither.

    Pragmatic, not RFC 5322: a local part, an @, a domain with a dot and a letters-only top-level domain, at most
    254 characters; two different addresses are ambiguous and asked again.
    """
    if not isinstance(text, str):
        return ContactAnswer("invalid")
    found = {m.group(0) for m in _EMAIL.finditer(text) if _standalone(text, m)}
    if len(found) == 1:
        email = found.pop()
        local, _, domain = email.rpartition("@")
        if len(email) <= 254 and len(local) <= 64 and ".." not in email and not local.startswith(".") \
                and not local.endswith("."):
            return ContactAnswer("email", local + "@" + domain.lower())
        return ContactAnswer("invalid")
    words = " ".join(re.sub(r"[^\w' ]+", " ", text.lower().replace("’", "'")).split())
    if not found and (words in _DECLINES or words.startswith(_DECLINE_STARTS)):
        return ContactAnswer("declined")
    return ContactAnswer("invalid")


def _standalone(text: str, match: re.Match) -> bool:
    """The address is not part of a longer token (e.g. "a@b.com@c" or "x@y.z/path")."""
    before = text[match.start() - 1] if match.start() else " "
    after = text[match.end()] if match.end() < len(text) else " "
    return not (before.isalnum() or before in "@.") and not (after.isalnum() or after in "@_-/")


def confirmation(contact: str | None, support_email: str) -> str:
    """What the bot says once the contact is captured (or declined): only what will really happen."""
    if contact:
        return (f"Thanks! A colleague from our customer-service team will reply to {contact} within one business "
                f"day. You don't need to stay in this chat.")
    return (f"All right, I haven't taken an email address, so nobody can write back to you from here. To reach our "
            f"customer-service team yourself, write to {support_email} — they reply within one business day.")


def person_button(reason: str) -> dict[str, str]:
    """"Talk to a person", whose payload carries why it was offered (Rasa's /intent{entities} syntax)."""
    payload = f"/{HANDOFF_INTENT}" + json.dumps({"reason": reason}, separators=(",", ":"))
    return {"title": PERSON_BUTTON_TITLE, "payload": payload}


def reason_from(value: Any) -> str:
    """The `reason` entity of the request; anything but a known button reason is the customer asking."""
    return value if value in (REPEATED_THUMBS_DOWN, LOW_SCORE) else ASKED


def offers_person(thumbs_down: int, settings: HandoffConfig) -> bool:
    """Whether the reply to a 👎 offers a person: from the configured number of 👎 in the conversation on."""
    return settings.offer_after_thumbs_down > 0 and thumbs_down >= settings.offer_after_thumbs_down


class HandoffDesk:
    """The bot's side: record a request, then its contact. Built once per action server (runtime.boot)."""

    def __init__(self, log: HandoffLog, live_version: Callable[[], str | None], settings: HandoffConfig) -> None:
        self.log = log
        self.live_version = live_version
        self.settings = settings

    def request(self, sender_id: str, reason: Any) -> Handoff:
        """Record an open hand-off for this conversation, with the version live now."""
        return self.log.open_handoff(sender_id, reason_from(reason), self.live_version())

    def record_contact(self, sender_id: str, handoff_id: Any, email: str | None) -> str:
        """Store the email (None: declined) on this conversation's hand-off; returns the bot's confirmation.

        A hand-off id that is missing or not this sender's is recorded anew (the promise still needs a record).
        """
        handoff = self.log.handoff(handoff_id) if isinstance(handoff_id, int | float) else None
        if handoff is None or handoff.sender_id != sender_id:
            handoff = self.request(sender_id, ASKED)
        self.log.set_handoff_contact(handoff.id, email)
        return confirmation(email, self.settings.support_email)


# ---- the operators' side (console and API) --------------------------------------------------------------------


def queue(log: HandoffLog, status: str | None = None, limit: int = 200) -> dict[str, Any]:
    """Hand-offs newest first (optionally of one status), with the count of each status.

    Raises:
        InputError: an unknown status.
    """
    if status is not None and status not in HANDOFF_STATUSES:
        raise InputError(f"status must be one of {list(HANDOFF_STATUSES)}, not {status!r}")
    return {"status": status, "counts": log.handoff_counts(),
            "handoffs": [h.to_dict() for h in log.handoffs(status, limit=limit)]}


def take(log: HandoffLog, handoff_id: Any, by: str = OPERATOR) -> Handoff:
    """An operator takes an open hand-off. Raises NotFound, or Conflict when it is not open."""
    return _move(log, handoff_id, "taken", by)


def close(log: HandoffLog, handoff_id: Any, by: str = OPERATOR) -> Handoff:
    """An operator closes an open or taken hand-off. Raises NotFound, or Conflict when it is closed already."""
    return _move(log, handoff_id, "closed", by)


def open_count(log: HandoffLog) -> int:
    return log.handoff_counts()["open"]


def per_version(log: HandoffLog) -> dict[str, VersionHandoffs]:
    """Hand-offs and answered turns (not-understood replies left out) of each model version, by version name."""
    from .not_understood import NOT_UNDERSTOOD  # not_understood offers person_button: imported here, no cycle

    return {row.model_version: row for row in log.handoffs_by_version(NOT_UNDERSTOOD)}


def _move(log: HandoffLog, handoff_id: Any, status: str, by: str) -> Handoff:
    number = _handoff_id(handoff_id)
    try:
        return log.move_handoff(number, status, by)
    except KeyError:
        raise NotFound(f"there is no hand-off {handoff_id!r}") from None


def _handoff_id(raw: Any) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.isdigit() and len(raw) <= 12:
        return int(raw)
    raise NotFound(f"there is no hand-off {raw!r}")
