"""The plugin's SQLite log: real files, WAL, ratings bound to the exact turn they rate."""

from __future__ import annotations

import sqlite3

import pytest

from rsft_plugin.errors import RatingRefused
from rsft_plugin.store import SCHEMA_VERSION, Store, TurnRecord


def _turn(sender: str = "alice", text: str = "where is my order") -> TurnRecord:
    return TurnRecord(sender_id=sender, message_id="m1", user_text=text, answer_id="track_order",
                      answer_topic="track_order", answer_text="You can follow your order ...",
                      model_version="v0001", score=0.61, probability=0.4,
                      top_k=[{"answer_id": "track_order", "cosine": 0.61, "probability": 0.4}], latency_ms=12.5)


@pytest.fixture
def store(tmp_path):
    opened = Store(tmp_path / "rsft.db")
    yield opened
    opened.close()


def test_turns_are_logged_with_everything_needed_later(store):
    turn_id = store.log_turn(_turn())
    row = store.turn(turn_id)
    assert len(turn_id) == 32
    assert row["sender_id"] == "alice" and row["model_version"] == "v0001"
    assert row["top_k"][0]["answer_id"] == "track_order" and row["rating"] is None


def test_a_rating_lands_on_its_turn_and_a_new_one_replaces_it(store):
    first, second = store.log_turn(_turn()), store.log_turn(_turn(text="and my refund?"))
    assert store.rate(first, "alice", 1).replaced is False
    assert store.rate(first, "alice", 0).replaced is True
    assert store.turn(first)["rating"] == 0 and store.turn(second)["rating"] is None
    assert store.count("ratings") == 1


@pytest.mark.parametrize("turn_id, sender, score, message", [
    ("0" * 32, "alice", 1, "no answer with that id"),
    (None, "mallory", 1, "another conversation"),
    (None, "alice", 2, "0 or 1"),
])
def test_refused_ratings_write_nothing(store, turn_id, sender, score, message):
    real = store.log_turn(_turn())
    store.rate(real, "alice", 1)
    with pytest.raises(RatingRefused, match=message):
        store.rate(turn_id or real, sender, score)
    assert store.count("ratings") == 1 and store.turn(real)["rating"] == 1


def test_sql_looking_text_is_stored_verbatim(store):
    hostile = "'); DROP TABLE turns; -- \u202e\x00 ☃"
    turn_id = store.log_turn(_turn(text=hostile))
    assert store.turn(turn_id)["user_text"] == hostile
    assert store.count("turns") == 1


def test_file_is_wal_and_reopening_keeps_data_and_schema(tmp_path):
    store = Store(tmp_path / "rsft.db")
    turn_id = store.log_turn(_turn())
    store.close()
    reopened = Store(tmp_path / "rsft.db")
    assert reopened.turn(turn_id)["user_text"] == "where is my order"
    reopened.close()
    with sqlite3.connect(tmp_path / "rsft.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_recent_turns_newest_first_and_per_sender(store):
    for n in range(3):
        store.log_turn(_turn(text=f"q{n}"))
    store.log_turn(_turn(sender="bob", text="bob's"))
    assert [t["user_text"] for t in store.recent_turns(2)] == ["bob's", "q2"]
    assert [t["user_text"] for t in store.recent_turns(10, "alice")] == ["q2", "q1", "q0"]
