"""The assistant behind the actions: answers are logged with their version; ratings are strict."""

from __future__ import annotations

import json

import pytest

from rsft_plugin.assistant import ASK_FOR_A_QUESTION, Assistant, parse_score
from rsft_plugin.errors import RatingRefused
from rsft_plugin.log import open_sqlite
from rsft_plugin.models.live import LiveModel
from rsft_plugin.text import clean_text


@pytest.fixture
def assistant(config, live_registry):
    store = open_sqlite(config.paths.db)
    yield Assistant(store, LiveModel(live_registry, config.model))
    store.close()


def test_an_answer_is_logged_with_its_version_and_carries_rating_buttons(assistant):
    reply = assistant.answer("alice", "m1", "how can I reset my password?")
    assert reply.answer_id == "reset_password" and reply.model_version == "v0001"
    turn = assistant.store.turn(reply.turn_id)
    assert turn["answer_text"] == reply.text and turn["latency_ms"] > 0 and turn["message_id"] == "m1"
    payloads = [b["payload"] for b in reply.buttons]
    assert [b["title"] for b in reply.buttons] == ["👍", "👎"]
    assert [json.loads(p[len("/rate"):]) for p in payloads] == [
        {"turn_id": reply.turn_id, "score": 1}, {"turn_id": reply.turn_id, "score": 0}]


def test_slots_are_filled_in_the_logged_answer(assistant):
    reply = assistant.answer("alice", None, "I want to cancel order #55123 right now")
    assert "{order_id}" not in reply.text
    assert "order #55123" in reply.text or reply.answer_id != "cancel_order"


@pytest.mark.parametrize("text", ["", "   ", "\x00\x01\u200b", None, 42])
def test_empty_messages_get_a_prompt_and_log_nothing(assistant, text):
    reply = assistant.answer("alice", None, text)
    assert reply.text == ASK_FOR_A_QUESTION and reply.turn_id is None
    assert assistant.store.count("turns") == 0


@pytest.mark.parametrize("text", [
    "where is my order " * 1200,  # ~20,000 characters
    "مرحبا، أين طلبي؟ where is my order",
    "😡😡😡 refund NOW 😡",
    "line one\r\nline\ttwo\x07\x1b[31m red",
    "'); DROP TABLE ratings; --",
])
def test_odd_messages_are_answered_and_logged_verbatim(assistant, text):
    reply = assistant.answer("alice", None, text)
    assert reply.turn_id and reply.text
    assert assistant.store.turn(reply.turn_id)["user_text"] == text


def test_rating_thanks_and_records(assistant):
    reply = assistant.answer("alice", None, "can I pay by paypal")
    assert "Glad" in assistant.rate("alice", reply.turn_id, 1).text
    assert "sorry" in assistant.rate("alice", reply.turn_id, "0").text
    assert assistant.store.turn(reply.turn_id)["rating"] == 0


@pytest.mark.parametrize("turn_id, score", [
    ("own", "5"), ("own", -1), ("own", float("nan")), ("own", "👍"), ("own", True), ("own", None),
    ("own", 10**100), ("own", [1]), ("own", 0.5),
    (None, 1), ("", 1), ("x' OR 1=1 --", 1), ("0" * 32, 1), ("other", 1), (12345, 1), ("OWN", 1),
])
def test_bad_ratings_are_refused_and_change_nothing(assistant, turn_id, score):
    mine = assistant.answer("alice", None, "where is my refund")
    theirs = assistant.answer("bob", None, "where is my refund")
    assistant.rate("alice", mine.turn_id, 1)
    turn_id = {"own": mine.turn_id, "OWN": mine.turn_id.upper(), "other": theirs.turn_id}.get(turn_id, turn_id)
    with pytest.raises(RatingRefused):
        assistant.rate("alice", turn_id, score)
    assert assistant.store.turn(mine.turn_id)["rating"] == 1
    assert assistant.store.turn(theirs.turn_id)["rating"] is None
    assert assistant.store.count("ratings") == 1


@pytest.mark.parametrize("value, expected", [(1, 1), (0, 0), ("1", 1), (" 0 ", 0), (1.0, 1)])
def test_parse_score_accepts_plain_zero_and_one(value, expected):
    assert parse_score(value) == expected


def test_clean_text_removes_controls_but_keeps_words():
    assert clean_text("  hi\x00there\u200b\n\nfriend  ") == "hi there friend"


def test_clean_text_drops_lone_surrogates_that_utf8_cannot_encode():
    assert clean_text("\ud800 refund\udfff please") == "refund please"
    assert clean_text("\ud800").encode("utf-8") == b""


def test_a_message_with_a_lone_surrogate_gets_a_normal_answer(assistant):
    # Issue 14: "\ud800 refund" reached the tokenizer and crashed the action server with a TypeError.
    reply = assistant.answer("alice", None, "\ud800 how do I get a refund?")
    assert reply.turn_id and reply.answer_id
    assert assistant.store.turn(reply.turn_id).user_text == "\\ud800 how do I get a refund?"  # kept, escaped
