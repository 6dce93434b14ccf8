"""rsft's REST channel: Rasa's own, made strict and never silent. A bot names it in credentials.yml as
`rsft_plugin.rasa.channels.RestWithFallback:` (`rsft init-rasa --channel` does), in place of `rest:`.

* A body that is not a JSON object with a string `sender` and a string `message` gets a 400 with a reason
  (Rasa's own channel would answer some of these with a 500), and so does JSON nested too deeply to parse
  (Python's parser raises RecursionError) and a sender id that is not 1 to 128 printable characters (Rasa
  stores the sender id in every tracker row: a 1 MB id made a 16.8 MB tracker).
* A message with no visible text (empty, spaces, zero-width or control characters) never reaches NLU, which would
  classify it as some intent with confidence ("" got "You're welcome!"): the customer is asked to type their
  question (the domain's `utter_empty_message`, or a plain request).
* When a message produced no bot message at all — the action server was down or crashed mid-request, and Rasa
  logged the error and carried on, or Rasa itself raised (the lock store's Redis went away) — the customer gets
  the trained domain's `utter_default` instead of silence (or the channel's `fallback_text:` setting in
  credentials.yml, or a plain apology).

This module runs inside Rasa's own process (Rasa 3.6: Python 3.10, another environment than rsft's), so it imports
only Rasa, Sanic and the standard library. Rasa imports it by module path; the folder holding `rsft_plugin` must be
on Rasa's PYTHONPATH (`rsft init-rasa` prints it; the launcher sets it).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.core.channels.rest import RestInput
from sanic import Blueprint, response
from sanic.request import Request

MAX_MESSAGE_CHARS = 20_000
MAX_SENDER_CHARS = 128  # the chat page's ids are UUIDs (36 characters)


DEFAULT_FALLBACK_TEXT = "Sorry, I can't answer right now. Please try again in a moment."
DEFAULT_EMPTY_TEXT = "I didn't get any text there. Please type your question."


def has_no_text(text: Any) -> bool:
    """Nothing a person could read: empty, or only spaces, control and invisible (format) characters."""
    return not isinstance(text, str) or all(ch.isspace() or not ch.isprintable() for ch in text)


def domain_fallback_text(app: Any, response: str = "utter_default") -> str | None:
    """The text of `response` (default: `utter_default`) in the model Rasa is serving, if it has one."""
    domain = getattr(getattr(getattr(app, "ctx", None), "agent", None), "domain", None)
    for variant in (getattr(domain, "responses", None) or {}).get(response) or []:
        if isinstance(variant, dict) and isinstance(variant.get("text"), str) and variant["text"].strip():
            return variant["text"].strip()
    return None


class RestWithFallback(RestInput):
    """Served at the usual /webhooks/rest/webhook."""

    def __init__(self, fallback_text: str | None = None) -> None:
        self.configured_text = fallback_text
        self._app: Any = None

    @classmethod
    def name(cls) -> str:
        return "rest"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> RestWithFallback:
        text = (credentials or {}).get("fallback_text")
        return cls(text if isinstance(text, str) and text.strip() else None)

    @property
    def fallback_text(self) -> str:
        return self.configured_text or domain_fallback_text(self._app) or DEFAULT_FALLBACK_TEXT

    async def answer_or_fall_back(self, on_new_message: Callable[[UserMessage], Awaitable[Any]],
                                  message: UserMessage) -> None:
        """Rasa's handling of `message`, with the fallback line collected when it produced no bot message."""
        collector = message.output_channel
        if has_no_text(message.text):
            text = domain_fallback_text(self._app, "utter_empty_message") or DEFAULT_EMPTY_TEXT
            await collector.send_text_message(message.sender_id, text)
            return
        try:
            await on_new_message(message)
        finally:
            # Also when Rasa raised (its lock store's Redis died mid-message, say): Rasa's channel logs the error
            # and answers with what was collected, which would be an empty list, not the fallback line.
            if isinstance(collector, CollectingOutputChannel) and not collector.messages:
                await collector.send_text_message(message.sender_id, self.fallback_text)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        async def remember_app(request: Request) -> None:
            self._app = request.app  # whose ctx.agent holds the trained domain

        blueprint = super().blueprint(functools.partial(self.answer_or_fall_back, on_new_message))
        blueprint.middleware(remember_app, "request")
        blueprint.middleware(_refuse_malformed, "request")
        return blueprint


async def _refuse_malformed(request: Request) -> Any:
    if request.method != "POST" or not request.path.endswith("/webhook"):
        return None
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        return response.json({"error": "the body is not JSON"}, status=400)
    except RecursionError:
        return response.json({"error": "the body is nested too deeply"}, status=400)
    if not isinstance(body, dict):
        return response.json({"error": "the body must be a JSON object"}, status=400)
    sender = body.get("sender")
    if not isinstance(sender, str) or not sender.strip():
        return response.json({"error": "sender must be a non-empty string"}, status=400)
    if len(sender) > MAX_SENDER_CHARS or not sender.isprintable():
        return response.json({"error": f"sender must be at most {MAX_SENDER_CHARS} printable characters"},
                             status=400)
    if not isinstance(body.get("message"), str):
        return response.json({"error": "message must be a string"}, status=400)
    if len(body["message"]) > MAX_MESSAGE_CHARS:
        return response.json({"error": f"message is longer than {MAX_MESSAGE_CHARS} characters"}, status=413)
    return None
