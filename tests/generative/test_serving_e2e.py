"""End to end with the generative kind: the real Rasa server and action server (the Stack `make run` uses) serving a
generative version, the writer at 12 new tokens. A question over the REST webhook gets a written reply (or its
grounding answer), its turn logs how it was written, a 👍 lands on it, a 👎 offers the next-best answers and a pick
is recorded; with a tiny time limit (rsft.yml changed, the action server restarted) the customer gets the grounding
answer, never an error."""

from __future__ import annotations

import json
import signal
import time

import pytest
import requests
import yaml

from rsft_plugin.answer_bank import render
from rsft_plugin.config import ModelConfig
from rsft_plugin.generative.policy import GenerativePolicy, reply_key
from rsft_plugin.launcher import Stack
from rsft_plugin.log import open_sqlite

from ..conftest import start_stack

pytestmark = [pytest.mark.e2e, pytest.mark.writer, pytest.mark.timeout(900)]
SERVING = {"max_new_tokens": 12, "fit_grounding": False, "time_limit_seconds": 60.0, "grounding_answers": 1}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, pretrained, writer):
    policy = GenerativePolicy(pretrained, writer, ModelConfig(kind="generative"))
    stack = start_stack(tmp_path_factory.mktemp("gen-e2e"), policy, server={"reload_poll_seconds": 0.5},
                        model={"kind": "generative"}, generative=SERVING, feedback={"choices": 2})
    yield stack
    stack.stop()


def _say(stack: Stack, sender: str, message: str) -> list[dict]:
    response = requests.post(f"{stack.rasa_url}/webhooks/rest/webhook", json={"sender": sender, "message": message},
                             timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def _rated(messages: list[dict]) -> tuple[dict, str]:
    """The one rateable message and its turn id."""
    rateable = [m for m in messages if any(b["payload"].startswith("/rate") for b in m.get("buttons") or [])]
    assert len(rateable) == 1, messages
    return rateable[0], json.loads(rateable[0]["buttons"][0]["payload"][len("/rate"):])["turn_id"]


def test_a_written_reply_over_rest_is_logged_rated_and_offers_choices(stack):
    answer, turn_id = _rated(_say(stack, "gen-e2e-ann", "Can I return hiking boots I have worn once?"))
    with open_sqlite(stack.config.paths.db) as store:
        turn = store.turn(turn_id)
    assert turn.answer_text == answer["text"] and turn.model_version == "v0001" and turn.latency_ms > 0
    writing = turn.writing
    assert writing is not None and writing["grounding_ids"] == [turn.answer_id] and writing["prompt_tokens"] > 0
    if writing["fallback"]:
        assert turn.reply_key == turn.answer_id and writing["reason"]
    else:
        assert turn.reply_key == reply_key(turn.answer_text) and 0 < writing["new_tokens"] <= 12

    thumbs_up = next(b for b in answer["buttons"] if b["title"] == "👍")
    assert any("Thanks" in m.get("text", "") for m in _say(stack, "gen-e2e-ann", thumbs_up["payload"]))

    other, other_id = _rated(_say(stack, "gen-e2e-ann", "How long does my refund take?"))
    thumbs_down = next(b for b in other["buttons"] if b["title"] == "👎")
    offered = [b for m in _say(stack, "gen-e2e-ann", thumbs_down["payload"]) for b in m.get("buttons") or []
               if b["payload"].startswith("/choose") and '"none"' not in b["payload"]]
    assert len(offered) == 2, offered
    picked = json.loads(offered[0]["payload"][len("/choose"):])["answer_id"]
    assert _say(stack, "gen-e2e-ann", offered[0]["payload"])[0]["text"]
    with open_sqlite(stack.config.paths.db) as store:
        assert store.turn(turn_id).rating == 1 and store.turn(other_id).rating == 0
        assert [(s.kind, s.turn_id, s.reply_key) for s in store.signals(sender_id="gen-e2e-ann")] == [
            ("choice", other_id, picked)]


def test_a_forced_timeout_answers_with_the_grounding_answer_over_rest(stack):
    path = stack.config.source
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["generative"]["time_limit_seconds"] = 0.001
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    killed = stack.kill("actions", signal.SIGTERM)  # supervision restarts it; it reads rsft.yml again
    deadline = time.monotonic() + 180
    question = "Can I return hiking boots I have worn once?"
    while True:
        messages = _say(stack, "gen-e2e-bob", question)  # 200 throughout: the fallback line while it restarts
        assert messages and all(m.get("text") for m in messages)
        if stack.pid("actions") not in (0, killed) and any(m.get("buttons") for m in messages):
            break
        assert time.monotonic() < deadline, messages
        time.sleep(1)
    answer, turn_id = _rated(messages)
    with open_sqlite(stack.config.paths.db) as store:
        turn = store.turn(turn_id)
        grounding = store.turn(turn_id).writing["grounding_ids"][0]
    assert turn.writing["fallback"] and turn.writing["reason"] == "timeout"
    assert turn.reply_key == turn.answer_id == grounding
    from rsft_plugin.answer_bank import load_answer_bank

    bank = load_answer_bank(stack.config.paths.answers)
    assert answer["text"] == render(bank.get(grounding).text, question)
