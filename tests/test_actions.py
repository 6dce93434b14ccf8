"""The Rasa actions, run through rasa_sdk's ActionExecutor on plain dict payloads (no Rasa server)."""

from __future__ import annotations

import asyncio
import json

import pytest
from rasa_sdk.executor import ActionExecutor

from rsft_plugin import runtime
from rsft_plugin.assistant import ASK_FOR_A_QUESTION
from rsft_plugin.not_understood import NOT_UNDERSTOOD, NOT_UNDERSTOOD_TEXT


@pytest.fixture
def executor(action_executor):
    return action_executor


HANDOFF_DOMAIN = {"intents": ["human_handoff"], "actions": ["action_answer", "action_rate", "action_handoff"]}


def _call(executor: ActionExecutor, action: str, text: str | None, sender: str = "alice",
          entities: list | None = None, intent: str = "ask_question", events: list | None = None,
          active_loop: dict | None = None, domain: dict | None = None, slots: dict | None = None) -> dict:
    payload = {
        "next_action": action, "sender_id": sender, "version": "3.6.21", "domain": domain or HANDOFF_DOMAIN,
        "tracker": {"sender_id": sender, "slots": slots or {}, "events": events or [], "paused": False,
                    "followup_action": None, "active_loop": active_loop or {}, "latest_action_name": "action_listen",
                    "latest_message": {"text": text, "intent": {"name": intent, "confidence": 1.0},
                                       "entities": entities or [], "message_id": "msg-1"}},
    }
    return asyncio.run(executor.run(payload)).model_dump()


def _rate_entities(turn_id, score) -> list:
    return [{"entity": "turn_id", "value": turn_id}, {"entity": "score", "value": score}]


def test_answer_then_rate_through_the_executor(executor):
    answered = _call(executor, "action_answer", "I'd like an invoice for my last order")
    message = answered["responses"][0]
    assert message["text"] and [b["title"] for b in message["buttons"]] == ["👍", "👎"]
    turn_id = json.loads(message["buttons"][0]["payload"][len("/rate"):])["turn_id"]
    store = runtime.assistant().store
    assert store.turn(turn_id)["message_id"] == "msg-1"

    rated = _call(executor, "action_rate", f'/rate{{"turn_id":"{turn_id}","score":1}}', intent="rate",
                  entities=_rate_entities(turn_id, 1))
    assert "Thanks" in rated["responses"][0]["text"]
    assert store.turn(turn_id)["rating"] == 1


@pytest.mark.parametrize("entities", [
    [], [{"entity": "score", "value": 1}], _rate_entities("own", "NaN"), _rate_entities("own", 7),
    _rate_entities("f" * 32, 1), _rate_entities("own", None), ["not a dict"], _rate_entities({"a": 1}, 1),
])
def test_malformed_rating_payloads_get_a_clear_reply_and_write_nothing(executor, entities):
    answered = _call(executor, "action_answer", "how do refunds work")
    turn_id = json.loads(answered["responses"][0]["buttons"][0]["payload"][len("/rate"):])["turn_id"]
    entities = [dict(e, value=turn_id) if isinstance(e, dict) and e.get("value") == "own" else e
                for e in entities]
    rated = _call(executor, "action_rate", "/rate", intent="rate", entities=entities)
    assert rated["responses"][0]["text"].startswith("Sorry, I couldn't record that rating")
    assert runtime.assistant().store.count("ratings") == 0


def test_another_senders_turn_cannot_be_rated(executor):
    answered = _call(executor, "action_answer", "how do refunds work", sender="bob")
    turn_id = json.loads(answered["responses"][0]["buttons"][0]["payload"][len("/rate"):])["turn_id"]
    rated = _call(executor, "action_rate", "/rate", sender="mallory", intent="rate",
                  entities=_rate_entities(turn_id, 0))
    assert "another conversation" in rated["responses"][0]["text"]
    assert runtime.assistant().store.turn(turn_id)["rating"] is None


@pytest.mark.parametrize("text", ["", None, "   ", "\u200b\n"])
def test_empty_question_is_answered_politely(executor, text):
    # Rasa's NLU may route an empty message to any intent; when it reaches action_answer it is asked again.
    answered = _call(executor, "action_answer", text)
    assert answered["responses"][0]["text"] == ASK_FOR_A_QUESTION
    assert not answered["responses"][0].get("buttons")
    assert runtime.assistant().store.count("turns") == 0


def test_nonsense_gets_topic_buttons_and_a_person_through_the_executor(executor):
    message = _call(executor, "action_answer", "<script>alert(17)</script>")["responses"][0]
    assert message["text"] == NOT_UNDERSTOOD_TEXT
    payloads = [b["payload"] for b in message["buttons"]]
    assert payloads[-1] == '/human_handoff{"reason":"low_score"}' and len(payloads) >= 2
    assert not any(p.startswith("/rate") for p in payloads)
    turn = runtime.assistant().store.recent_turns(1, sender_id="alice")[0]
    assert turn.reply_key == NOT_UNDERSTOOD and turn.answer_id is None


def test_the_turn_that_fills_the_session_asks_rasa_to_start_a_new_one(executor):
    limit = runtime.config().server.session_max_turns
    session = [{"event": "session_started"}, {"event": "action", "name": "action_listen"}]
    turn = [{"event": "user", "text": "hi"}, {"event": "action", "name": "action_answer"},
            {"event": "action", "name": "action_listen"}]
    assert _call(executor, "action_answer", "refunds?", events=session + turn * (limit - 1))["events"] == []
    full = session + turn * limit
    new_session = [{"event": "followup", "timestamp": None, "name": "action_session_start"}]
    assert _call(executor, "action_answer", "refunds?", events=full)["events"] == new_session
    assert _call(executor, "action_rate", "/rate", intent="rate", events=full)["events"] == new_session
    assert _call(executor, "action_answer", "refunds?", events=full,
                 active_loop={"name": "handoff_form"})["events"] == []


def test_a_bot_without_the_hand_off_gets_no_person_button(executor):
    """`rsft init-rasa` bots have no action_handoff: a button to an intent they lack would be a dead end."""
    message = _call(executor, "action_answer", "asdfghjkl", domain={"intents": [], "actions": ["action_answer"]})
    assert message["responses"][0]["buttons"] and not any(
        b["payload"].startswith("/human_handoff") for b in message["responses"][0]["buttons"])


def test_the_hand_off_actions_record_validate_and_confirm(executor):
    store = runtime.assistant().store
    started = _call(executor, "action_handoff", '/human_handoff{"reason":"low_score"}', intent="human_handoff",
                    entities=[{"entity": "reason", "value": "low_score"}])
    handoff_id = next(e["value"] for e in started["events"] if e["name"] == "handoff_id")
    recorded = store.handoff(handoff_id)
    assert (recorded.sender_id, recorded.reason, recorded.status, recorded.model_version) == (
        "alice", "low_score", "open", "v0001")

    def validate(text: str) -> dict:
        return _call(executor, "validate_handoff_form", text, intent="ask_question", slots={
            "contact": text, "handoff_id": handoff_id, "requested_slot": "contact"},
            domain={**HANDOFF_DOMAIN, "forms": {"handoff_form": {"required_slots": ["contact"]}}},
            events=[{"event": "user", "text": text}, {"event": "slot", "name": "contact", "value": text}])

    def slots(result: dict) -> dict:
        return {e["name"]: e["value"] for e in result["events"] if e["event"] == "slot"}

    invalid = validate("my email is bob at example")
    assert slots(invalid) == {"contact": None} and "doesn't look like an email" in invalid["responses"][0]["text"]
    assert slots(validate("Sure: Bob@Example.COM")) == {"contact": "Bob@example.com"}
    assert slots(validate("no thanks")) == {"contact": None, "contact_declined": True, "requested_slot": None}

    done = _call(executor, "action_handoff_done", "Bob@example.com", slots={
        "contact": "Bob@example.com", "handoff_id": handoff_id})
    assert "reply to Bob@example.com within one business day" in done["responses"][0]["text"]
    assert store.handoff(handoff_id).contact == "Bob@example.com"
    assert all(e["value"] is None for e in done["events"])  # the slots are reset for a later hand-off
