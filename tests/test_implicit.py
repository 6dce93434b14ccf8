"""Implicit feedback in the live bot: what a customer does right after an answer is logged as a weak signal on it.

Real SQLite, the real live model and the real pretrained MiniLM for "similar question" (implicit.py).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from rasa_sdk.executor import ActionExecutor

from rsft_plugin import choices, runtime
from rsft_plugin.assistant import Assistant
from rsft_plugin.config import FeedbackConfig
from rsft_plugin.errors import RatingRefused, SignalRefused
from rsft_plugin.handoff import LOW_SCORE, REPEATED_THUMBS_DOWN
from rsft_plugin.implicit import ImplicitFeedback, encoder_similarity
from rsft_plugin.log import open_sqlite
from rsft_plugin.models.live import LiveModel

QUESTION = "how can I reset my password?"
PARAPHRASE = "I forgot my password, how do I reset it"
UNRELATED = "do you deliver on weekends"


@pytest.fixture(scope="session")
def similarity():
    """The pretrained MiniLM's question cosine, loaded once for the session (as the action server loads it)."""
    return encoder_similarity()


class Clock:
    """Now, movable: a test steps past the window without waiting."""

    def __init__(self) -> None:
        self.ahead = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead


@pytest.fixture
def store(config):
    store = open_sqlite(config.paths.db)
    yield store
    store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_assistant(store, config, live_registry, similarity, clock):
    def make(max_per_minute: int | None = 20, **feedback) -> Assistant:
        settings = FeedbackConfig(**feedback)
        implicit = ImplicitFeedback(store, settings, max_per_minute, similarity, clock)
        return Assistant(store, LiveModel(live_registry, config.model), max_per_minute, implicit=implicit)

    return make


def _signals(store, sender: str = "alice") -> list[tuple[str, str]]:
    return [(s.kind, s.turn_id) for s in store.signals(sender_id=sender)]


def test_a_paraphrase_right_after_an_answer_is_a_reask_on_that_answer(make_assistant, store):
    assistant = make_assistant()
    first = assistant.answer("alice", None, QUESTION)
    second = assistant.answer("alice", None, PARAPHRASE)
    assert second.turn_id and second.text  # the re-asked question is answered as usual
    [signal] = store.signals()
    assert (signal.kind, signal.turn_id, signal.sender_id) == ("reask", first.turn_id, "alice")
    assert signal.model_version == first.model_version == "v0001"
    assert signal.reply_key == signal.served_key == first.answer_id
    assert signal.user_text == QUESTION


def test_an_unrelated_next_question_is_no_signal(make_assistant, store):
    assistant = make_assistant()
    assistant.answer("alice", None, QUESTION)
    assistant.answer("alice", None, UNRELATED)
    assert store.signals() == []


def test_a_similar_question_after_the_window_is_no_signal(make_assistant, store, clock):
    assistant = make_assistant(window_seconds=60)
    assistant.answer("alice", None, QUESTION)
    clock.ahead = timedelta(seconds=61)
    assistant.answer("alice", None, PARAPHRASE)
    assistant.thanked("alice")
    assert store.signals() == []


def test_another_senders_similar_question_is_no_signal(make_assistant, store):
    assistant = make_assistant()
    assistant.answer("alice", None, QUESTION)
    assistant.answer("bob", None, PARAPHRASE)  # bob's first message: about nothing bob was told
    assert store.signals() == []


@pytest.mark.parametrize("score", [1, 0])
def test_an_explicitly_rated_answer_gets_no_implicit_signal(make_assistant, store, score):
    assistant = make_assistant()
    first = assistant.answer("alice", None, QUESTION)
    assistant.rate("alice", first.turn_id, score)
    assistant.answer("alice", None, PARAPHRASE)
    assert store.signals() == []


def test_a_not_understood_reply_gets_no_implicit_signal(make_assistant, store):
    assistant = make_assistant()
    first = assistant.answer("alice", None, "asdfghjkl qwertzuiop")
    assert first.turn_id is None and first.logged_turn_id  # not understood: logged, nothing answered
    assistant.thanked("alice")
    assistant.asked_for_person("alice", None)
    assert store.signals() == []


def test_thanks_or_goodbye_right_after_an_answer_is_a_thanks_on_it(make_assistant, store):
    assistant = make_assistant()
    first = assistant.answer("alice", None, QUESTION)
    assistant.thanked("alice")
    assert _signals(store) == [("thanks", first.turn_id)]


def test_asking_for_a_person_right_after_an_answer_is_asked_human(make_assistant, store):
    assistant = make_assistant()
    first = assistant.answer("alice", None, QUESTION)
    assistant.asked_for_person("alice", None)  # typed "I want a human": no reason entity
    assert _signals(store) == [("asked_human", first.turn_id)]


@pytest.mark.parametrize("reason", [LOW_SCORE, REPEATED_THUMBS_DOWN])
def test_the_person_buttons_are_no_implicit_signal(make_assistant, store, reason):
    assistant = make_assistant()
    assistant.answer("alice", None, QUESTION)
    assistant.asked_for_person("alice", reason)
    assert store.signals() == []


@pytest.mark.parametrize("weight", ["reask_weight", "asked_human_weight", "thanks_weight"])
def test_a_weight_of_zero_turns_its_signal_off(make_assistant, store, weight):
    assistant = make_assistant(**{weight: 0})
    act = {"reask_weight": lambda: assistant.answer("alice", None, PARAPHRASE),
           "asked_human_weight": lambda: assistant.asked_for_person("alice", None),
           "thanks_weight": lambda: assistant.thanked("alice")}[weight]
    assistant.answer("alice", None, QUESTION)
    act()
    assert store.signals() == []


def test_never_two_implicit_signals_on_one_turn(make_assistant, store):
    assistant = make_assistant()
    first = assistant.answer("alice", None, QUESTION)
    assistant.thanked("alice")
    assistant.thanked("alice")  # "thanks" then "bye"
    assistant.asked_for_person("alice", None)
    second = assistant.answer("alice", None, PARAPHRASE)  # would be a reask, but the answer has its signal
    assert _signals(store) == [("thanks", first.turn_id)]
    # and the log itself refuses a second one, whoever asks
    with pytest.raises(SignalRefused, match="already has a signal"):
        store.record_signal(first.turn_id, "alice", "reask", first.answer_id)
    assert second.turn_id is not None


def test_a_flooding_sender_is_still_answered_but_no_signal_is_written(make_assistant, store):
    assistant = make_assistant(max_per_minute=2)
    first = assistant.answer("mallory", None, QUESTION)
    for _ in range(2):  # the cap is shared with ratings: two attempts this minute use it up
        assert assistant.rate("mallory", first.turn_id, 1)
    with pytest.raises(RatingRefused, match="a lot of"):
        assistant.rate("mallory", first.turn_id, 1)
    second = assistant.answer("mallory", None, UNRELATED)  # unrated, answered: a thanks would count now
    assistant.thanked("mallory")
    third = assistant.answer("mallory", None, "I want to return my jacket")
    assert second.turn_id and third.turn_id and third.text
    assert store.signals(sender_id="mallory") == []


# ---- resolved: the answer that settled a missed question, once the customer put it in other words ----------------

def _resolved(store, sender: str = "alice") -> list[tuple[str, str | None]]:
    return [(s.turn_id, s.reply_key) for s in store.signals(sender_id=sender) if s.kind == "resolved"]


def test_a_thumbs_up_on_the_rephrased_question_settles_the_missed_one_with_that_answer(make_assistant, store):
    assistant = make_assistant(resolved_weight=1.0)
    first = assistant.answer("alice", None, QUESTION)
    assistant.rate("alice", first.turn_id, 0)  # missed
    second = assistant.answer("alice", None, PARAPHRASE)
    assistant.rate("alice", second.turn_id, 1)
    assert _resolved(store) == [(first.turn_id, second.answer_id)]
    [signal] = [s for s in store.signals(sender_id="alice") if s.kind == "resolved"]
    assert signal.user_text == QUESTION and signal.model_version == first.model_version  # the missed question's


def test_a_pick_on_the_rephrased_question_settles_a_question_answered_none_of_these(make_assistant, store):
    assistant = make_assistant(resolved_weight=1.0)
    first = assistant.answer("alice", None, QUESTION)
    assistant.rate("alice", first.turn_id, 0)
    assistant.choose("alice", first.turn_id, "none")
    second = assistant.answer("alice", None, PARAPHRASE)
    assistant.rate("alice", second.turn_id, 0)
    offered = choices.offered_answers(store.turn(second.turn_id), assistant.live.current.bank, assistant.feedback)
    assistant.choose("alice", second.turn_id, offered[0].id)
    assert _resolved(store) == [(first.turn_id, offered[0].id)]


def test_a_question_not_understood_then_asked_again_and_settled_gets_that_answer(store, config, live_registry):
    """The third way to miss a question. Similarity is pinned here (the real one is tested above): gibberish is
    what the test model reliably fails to understand, and no real rephrase of it exists."""
    implicit = ImplicitFeedback(store, FeedbackConfig(resolved_weight=1.0), 20, lambda a, b: 1.0)
    assistant = Assistant(store, LiveModel(live_registry, config.model), 20, implicit=implicit)
    first = assistant.answer("alice", None, "asdfghjkl qwertzuiop")
    assert first.turn_id is None and first.logged_turn_id  # not understood
    second = assistant.answer("alice", None, QUESTION)
    assistant.rate("alice", second.turn_id, 1)
    assert _resolved(store) == [(first.logged_turn_id, second.answer_id)]


@pytest.mark.parametrize("case", ["off by default", "unrelated", "after the window", "first was right",
                                  "first was picked", "rated down"])
def test_no_resolved_signal_unless_a_missed_question_was_asked_again_and_settled(make_assistant, store, case):
    assistant = make_assistant(**({} if case == "off by default" else {"resolved_weight": 1.0}))
    first = assistant.answer("alice", None, QUESTION)
    assistant.rate("alice", first.turn_id, 1 if case == "first was right" else 0)
    if case == "first was picked":  # settled on its own, under "Was it one of these?"
        offered = choices.offered_answers(store.turn(first.turn_id), assistant.live.current.bank, assistant.feedback)
        assistant.choose("alice", first.turn_id, offered[0].id)
    if case == "after the window":  # turns carry the log's own time: the first one moves back instead
        long_ago = datetime.now(UTC) - timedelta(seconds=FeedbackConfig().window_seconds + 5)
        store.db.execute("UPDATE turns SET created_at = ? WHERE id = ?",
                         [long_ago.isoformat(timespec="milliseconds"), first.turn_id])
    second = assistant.answer("alice", None, UNRELATED if case == "unrelated" else PARAPHRASE)
    assistant.rate("alice", second.turn_id, 0 if case == "rated down" else 1)
    assert _resolved(store) == []


# ---- through the Rasa actions (rasa_sdk's executor on plain payloads, no Rasa server) ------------------------


def _call(executor: ActionExecutor, action: str, text: str, intent: str, entities: list | None = None) -> dict:
    payload = {
        "next_action": action, "sender_id": "carol", "version": "3.6.21",
        "domain": {"actions": ["action_answer", "action_rate", "action_rsft_thanks", "action_rsft_goodbye",
                               "action_handoff"]},
        "tracker": {"sender_id": "carol", "slots": {}, "events": [], "paused": False, "followup_action": None,
                    "active_loop": {}, "latest_action_name": "action_listen",
                    "latest_message": {"text": text, "intent": {"name": intent, "confidence": 1.0},
                                       "entities": entities or [], "message_id": "m"}},
    }
    return asyncio.run(executor.run(payload)).model_dump()


@pytest.fixture
def executor(action_executor):
    return action_executor


@pytest.mark.parametrize("action, intent, response", [("action_rsft_thanks", "thank", "utter_you_are_welcome"),
                                                      ("action_rsft_goodbye", "goodbye", "utter_goodbye")])
def test_the_thanks_and_goodbye_actions_record_thanks_and_say_the_usual_reply(executor, action, intent, response):
    _call(executor, "action_answer", QUESTION, "ask_question")
    result = _call(executor, action, "thanks", intent)
    assert [m["response"] for m in result["responses"]] == [response]
    store = runtime.assistant().store
    [turn] = store.recent_turns(1, "carol")
    assert [(s.kind, s.turn_id) for s in store.signals()] == [("thanks", turn.id)]


def test_the_handoff_action_records_asked_human(executor):
    _call(executor, "action_answer", QUESTION, "ask_question")
    _call(executor, "action_handoff", "I want to talk to a human", "human_handoff")
    store = runtime.assistant().store
    assert [s.kind for s in store.signals()] == ["asked_human"]
    assert [h.reason for h in store.handoffs()] == ["asked"]
