"""Rasa custom actions: thin adapters between Rasa's tracker and rsft_plugin's Assistant.

Importing this module boots the assistant (loads the live model once, starts the pointer watcher), so the
action server is ready before its first request and never loads a model inside `run`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from rsft_plugin import choices, handoff, runtime
from rsft_plugin.assistant import Reply
from rsft_plugin.conversation_sessions import SESSION_START_ACTION, should_start_new_session
from rsft_plugin.errors import RatingRefused
from rsft_plugin.rasa import GOODBYE_ACTION, THANKS_ACTION

log = logging.getLogger(__name__)

if not runtime.is_booted():
    runtime.boot()


def _send(dispatcher: CollectingDispatcher, reply: Reply) -> None:
    dispatcher.utter_message(text=reply.text, buttons=reply.buttons or None)


def _entity(tracker: Tracker, name: str) -> Any:
    for entity in tracker.latest_message.get("entities") or []:
        if isinstance(entity, dict) and entity.get("entity") == name:
            return entity.get("value")
    return None


def _session_boundary(tracker: Tracker) -> list:
    """Rasa's own action_session_start after this reply once the session holds server.session_max_turns turns."""
    if should_start_new_session(tracker.events, tracker.active_loop_name, runtime.config().server.session_max_turns):
        return [FollowupAction(SESSION_START_ACTION)]
    return []


def _has_action(domain: dict[str, Any], action: str) -> bool:
    """Whether the domain Rasa sent has `action`: only a bot with the hand-off gets "Talk to a person", only one with
    action_choose gets "Was it one of these?" (ours has both; not every `rsft init-rasa` bot does)."""
    return action in ((domain or {}).get("actions") or [])


def _offers_person(domain: dict[str, Any]) -> bool:
    return _has_action(domain, handoff.HANDOFF_ACTION)


def _offers_choices(domain: dict[str, Any]) -> bool:
    return _has_action(domain, choices.CHOOSE_ACTION)


class ActionAnswer(Action):
    """Answer the customer's question from the live response model, with 👍/👎 buttons."""

    def name(self) -> str:
        return "action_answer"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list:
        message = tracker.latest_message or {}
        # The model is CPU-bound: answer in a worker thread so the server keeps accepting requests.
        reply = await asyncio.to_thread(runtime.assistant().answer, tracker.sender_id,
                                        message.get("message_id"), message.get("text") or "", _offers_person(domain),
                                        _offers_choices(domain))
        _send(dispatcher, reply)
        return _session_boundary(tracker)


class ActionRate(Action):
    """Record the customer's 👍/👎 for the answer named in the button payload, and thank them."""

    def name(self) -> str:
        return "action_rate"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list:
        try:
            reply = await asyncio.to_thread(runtime.assistant().rate, tracker.sender_id, _entity(tracker, "turn_id"),
                                            _entity(tracker, "score"), _offers_person(domain),
                                            _offers_choices(domain))
        except RatingRefused as refused:
            log.info("rating refused for %s: %s", tracker.sender_id, refused)
            reply = Reply(f"Sorry, I couldn't record that rating: {refused}.")
        _send(dispatcher, reply)
        return _session_boundary(tracker)


class ActionChoose(Action):
    """Record the customer's click on "Was it one of these?" (a next-best answer or "None of these") and answer it."""

    def name(self) -> str:
        return choices.CHOOSE_ACTION

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list:
        try:
            reply = await asyncio.to_thread(runtime.assistant().choose, tracker.sender_id,
                                            _entity(tracker, "turn_id"), _entity(tracker, "answer_id"),
                                            _offers_person(domain))
        except RatingRefused as refused:  # SignalRefused is one
            log.info("choice refused for %s: %s", tracker.sender_id, refused)
            reply = Reply(f"Sorry, I couldn't record that: {refused}.")
        _send(dispatcher, reply)
        return _session_boundary(tracker)


class ActionHandoff(Action):
    """Record the customer's request to talk to a person (why: the `reason` entity of a button), before the
    `handoff_form` asks for the email the promise needs."""

    def name(self) -> str:
        return handoff.HANDOFF_ACTION

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list:
        reason = _entity(tracker, "reason")
        recorded = await asyncio.to_thread(runtime.handoff_desk().request, tracker.sender_id, reason)
        await asyncio.to_thread(runtime.assistant().asked_for_person, tracker.sender_id, reason)
        dispatcher.utter_message(text=handoff.RECORDED)
        return [SlotSet("handoff_id", recorded.id), SlotSet("contact", None), SlotSet("contact_declined", None)]


async def _thank_and_reply(dispatcher: CollectingDispatcher, tracker: Tracker, response: str) -> list:
    """Record what the message tells about the answer just given, then say the bot's usual `response`.

    A helper, not a base class: rasa-sdk registers every Action subclass it finds, and a base has no name.
    """
    await asyncio.to_thread(runtime.assistant().thanked, tracker.sender_id)
    dispatcher.utter_message(response=response)
    return []


class ActionThanks(Action):
    """The customer said thanks: a weak 👍 (`thanks`) on the answer just given, then "You're welcome"."""

    def name(self) -> str:
        return THANKS_ACTION

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list:
        return await _thank_and_reply(dispatcher, tracker, "utter_you_are_welcome")


class ActionGoodbye(Action):
    """The customer said goodbye: a weak 👍 (`thanks`) on the answer just given, then the goodbye."""

    def name(self) -> str:
        return GOODBYE_ACTION

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list:
        return await _thank_and_reply(dispatcher, tracker, "utter_goodbye")


class ValidateHandoffForm(FormValidationAction):
    """Check the reply to "which email?": an email fills `contact`; "no"/"cancel" ends the form declined; anything
    else is explained and asked again."""

    def name(self) -> str:
        return "validate_handoff_form"

    def validate_contact(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                         domain: dict[str, Any]) -> dict[str, Any]:
        answer = handoff.read_contact(value)
        if answer.kind == "email":
            return {"contact": answer.email}
        if answer.kind == "declined":  # requested_slot None ends the form with contact still empty
            return {"contact": None, "contact_declined": True, "requested_slot": None}
        dispatcher.utter_message(text=handoff.INVALID_CONTACT)
        return {"contact": None}


class ActionHandoffDone(Action):
    """Store the email (or that the customer declined) on the hand-off and say honestly what happens next."""

    def name(self) -> str:
        return "action_handoff_done"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list:
        contact = tracker.get_slot("contact")
        text = await asyncio.to_thread(runtime.handoff_desk().record_contact, tracker.sender_id,
                                       tracker.get_slot("handoff_id"), contact if isinstance(contact, str) else None)
        dispatcher.utter_message(text=text)
        return [SlotSet("handoff_id", None), SlotSet("contact", None), SlotSet("contact_declined", None)]
