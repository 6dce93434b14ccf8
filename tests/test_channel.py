"""rsft's REST channel (rsft_plugin/rasa/channels.py) in Rasa's own Python: a message that produced no bot message
gets the fallback line — also when Rasa raised while handling it (its lock store's Redis died mid-message), where
Rasa's channel would log the error and answer an empty list. The error still reaches Rasa, which logs it."""

from __future__ import annotations

import json
import subprocess

from .conftest import REPO

_ANSWER_THREE_WAYS = """
import asyncio, json
from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from redis.exceptions import ConnectionError as RedisConnectionError
from rsft_plugin.rasa.channels import RestWithFallback

async def answers(message):
    await message.output_channel.send_text_message(message.sender_id, "an answer")

async def says_nothing(message):
    return None

async def loses_redis(message):
    raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6380. Connection refused.")

channel, outcomes = RestWithFallback("the fallback line"), {}
for handler in (answers, says_nothing, loses_redis):
    collector, raised = CollectingOutputChannel(), None
    try:
        asyncio.run(channel.answer_or_fall_back(handler, UserMessage("where is my parcel", collector, "s-1")))
    except Exception as exc:
        raised = type(exc).__name__
    outcomes[handler.__name__] = {"texts": [m.get("text") for m in collector.messages], "raised": raised}
print(json.dumps(outcomes))
"""


def test_a_message_rasa_failed_on_gets_the_fallback_line_and_the_error_still_reaches_rasa():
    from rsft_plugin.launcher import _rasa_env
    from rsft_plugin.rasa import rasa_pythonpath

    done = subprocess.run([str(REPO / ".venv-rasa" / "bin" / "python"), "-c", _ANSWER_THREE_WAYS],
                          env={**_rasa_env(), "PYTHONPATH": rasa_pythonpath()}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    outcomes = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcomes == {"answers": {"texts": ["an answer"], "raised": None},
                        "says_nothing": {"texts": ["the fallback line"], "raised": None},
                        "loses_redis": {"texts": ["the fallback line"], "raised": "ConnectionError"}}
