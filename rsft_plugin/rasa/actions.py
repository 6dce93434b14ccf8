"""Rasa custom actions: thin adapters between Rasa's tracker and rsft_plugin's Assistant.

Importing this module boots the assistant (loads the live model once, starts the pointer watcher), so the
action server is ready before its first request and never loads a model inside `run`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import FollowupAction
from rasa_sdk.executor import CollectingDispatcher

from rsft_plugin import runtime
from rsft_plugin.assistant import Reply
from rsft_plugin.conversation_sessions import SESSION_START_ACTION, should_start_new_session
from rsft_plugin.errors import RatingRefused

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


class ActionAnswer(Action):
    """Answer the customer's question from the live response model, with 👍/👎 buttons."""

    def name(self) -> str:
        return "action_answer"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list:
        message = tracker.latest_message or {}
        # The model is CPU-bound: answer in a worker thread so the server keeps accepting requests.
        reply = await asyncio.to_thread(runtime.assistant().answer, tracker.sender_id,
                                        message.get("message_id"), message.get("text") or "")
        _send(dispatcher, reply)
        return _session_boundary(tracker)


class ActionRate(Action):
    """Record the customer's 👍/👎 for the answer named in the button payload, and thank them."""

    def name(self) -> str:
        return "action_rate"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list:
        try:
            reply = await asyncio.to_thread(runtime.assistant().rate, tracker.sender_id,
                                            _entity(tracker, "turn_id"), _entity(tracker, "score"))
        except RatingRefused as refused:
            log.info("rating refused for %s: %s", tracker.sender_id, refused)
            reply = Reply(f"Sorry, I couldn't record that rating: {refused}.")
        _send(dispatcher, reply)
        return _session_boundary(tracker)
