"""When a long conversation starts a new Rasa session (server.session_max_turns): plain functions over events."""

from __future__ import annotations

import pytest

from rsft_plugin.config import ConfigError, load_config
from rsft_plugin.conversation_sessions import should_start_new_session, turns_in_current_session

from .conftest import write_config


def _turn(text: str = "where is my order") -> list[dict]:
    """The events one answered question leaves in a Rasa tracker."""
    return [{"event": "user", "text": text}, {"event": "action", "name": "action_answer"},
            {"event": "bot", "text": "..."}, {"event": "action", "name": "action_listen"}]


def _session_start() -> list[dict]:
    return [{"event": "action", "name": "action_session_start"}, {"event": "session_started"},
            {"event": "slot", "name": "email", "value": "a@b.example"}, {"event": "action", "name": "action_listen"}]


def test_turns_are_counted_from_the_latest_session_start_or_restart():
    assert turns_in_current_session([]) == 0
    assert turns_in_current_session(None) == 0
    assert turns_in_current_session(_session_start() + _turn() * 5) == 5
    assert turns_in_current_session(_turn() * 7 + _session_start() + _turn() * 2) == 2
    assert turns_in_current_session(_turn() * 7 + [{"event": "restart"}] + _turn()) == 1
    assert turns_in_current_session(_turn() * 3 + _session_start()) == 0


def test_malformed_events_are_skipped_not_fatal():
    assert turns_in_current_session(["user", None, 3, {"no": "event"}, *_turn()]) == 1


@pytest.mark.parametrize(("turns", "max_turns", "loop", "expected"), [
    (2, 3, None, False), (3, 3, None, True), (4, 3, None, True),  # the N-th turn ends the session (or a later one)
    (3, 3, "handoff_form", False),  # never in the middle of a form
    (500, 0, None, False),  # 0 turns it off: only Rasa's inactivity expiry
])
def test_a_new_session_starts_after_max_turns_unless_a_form_is_active(turns, max_turns, loop, expected):
    events = _session_start() + _turn() * turns
    assert should_start_new_session(events, loop, max_turns) is expected


def test_a_session_started_by_the_limit_counts_afresh():
    events = _session_start() + _turn() * 3 + _session_start() + _turn()
    assert not should_start_new_session(events, None, 3)


def test_the_setting_is_validated(tmp_path):
    assert load_config(write_config(tmp_path)).server.session_max_turns == 20
    assert load_config(write_config(tmp_path, server={"session_max_turns": 0})).server.session_max_turns == 0
    with pytest.raises(ConfigError, match="session_max_turns"):
        load_config(write_config(tmp_path, server={"session_max_turns": -1}))
