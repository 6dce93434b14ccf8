"""The REST channel of the Northwind Goods assistant: Rasa's own, made strict and never silent.

* A body that is not a JSON object with a string `sender` and a string `message` gets a 400 with a reason
  (Rasa's own channel would answer some of these with a 500), and so does JSON nested too deeply to parse
  (Python's parser raises RecursionError) and a sender id that is not 1 to 128 printable characters (Rasa
  stores the sender id in every tracker row: a 1 MB id made a 16.8 MB tracker).
* When a message produced no bot message at all — the action server was down or crashed mid-request, and Rasa
  logged the error and carried on — the customer gets the domain's `utter_default` instead of silence.

credentials.yml names this class; the launcher puts bot/ on Rasa's PYTHONPATH so it can be imported.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.core.channels.rest import RestInput
from sanic import Blueprint, response
from sanic.request import Request

MAX_MESSAGE_CHARS = 20_000
MAX_SENDER_CHARS = 128  # the chat page's ids are UUIDs (36 characters)


def _fallback_text() -> str:
    domain = yaml.safe_load((Path(__file__).parent / "domain.yml").read_text(encoding="utf-8"))
    return domain["responses"]["utter_default"][0]["text"].strip()


class RestWithFallback(RestInput):
    """Served at the usual /webhooks/rest/webhook."""

    fallback_text = _fallback_text()

    @classmethod
    def name(cls) -> str:
        return "rest"

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        async def answer_or_fall_back(message: UserMessage) -> None:
            await on_new_message(message)
            collector = message.output_channel
            if isinstance(collector, CollectingOutputChannel) and not collector.messages:
                await collector.send_text_message(message.sender_id, self.fallback_text)

        blueprint = super().blueprint(answer_or_fall_back)
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
