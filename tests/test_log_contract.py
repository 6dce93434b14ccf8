"""The log's contract: every backend behind `rsft_plugin.log.Log` passes these tests on real storage.

A backend adds itself to `BACKENDS` with a factory that opens a fresh, empty log (SQLite: a file under `tmp_path`;
PostgreSQL: a new database on the session's private server, see `postgres_log_url` in conftest.py), and is done when
this file passes. Backend-only facts (SQLite's WAL and old files, PostgreSQL's concurrency) are at the end.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from rsft_plugin.errors import Conflict, JobBusy, RatingRefused, SignalRefused
from rsft_plugin.log import BACKENDS as LOG_BACKENDS
from rsft_plugin.log import (
    SCHEMA_VERSION,
    AnswerRevision,
    CandidateRow,
    ConversationSummary,
    Handoff,
    Job,
    Log,
    Publication,
    RoundPrompt,
    RoundRecord,
    TrainingExample,
    Turn,
    TurnRecord,
    VersionHandoffs,
    backend_class,
    open_postgres,
    open_sqlite,
)
from rsft_plugin.not_understood import NOT_UNDERSTOOD

# name -> a fresh, empty log (the pytest request gives access to fixtures such as the PostgreSQL server).
BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Log]] = {
    "sqlite": lambda request, tmp: open_sqlite(tmp / "rsft.db"),
    "postgres": lambda request, tmp: open_postgres(request.getfixturevalue("postgres_log_url")),
}
ALIVE, DEAD = (lambda pid: True), (lambda pid: False)


@pytest.fixture(params=sorted(BACKENDS))
def log(request, tmp_path):
    opened = BACKENDS[request.param](request, tmp_path)
    yield opened
    opened.close()


def test_every_backend_is_in_the_contract_suite_and_implements_the_whole_log():
    assert set(BACKENDS) == set(LOG_BACKENDS)
    for cls in map(backend_class, LOG_BACKENDS):
        missing = [name for name in dir(Log) if not name.startswith("_") and not hasattr(cls, name)]
        assert not missing, (cls.__name__, missing)


def _turn(sender: str = "alice", text: str = "where is my order", answer: str | None = "track_order",
          score: float = 0.61, version: str = "v0001", reply_key: str | None = None) -> TurnRecord:
    return TurnRecord(sender_id=sender, message_id="m1", user_text=text, answer_id=answer,
                      answer_topic=answer or "generated", answer_text="You can follow your order ...",
                      model_version=version, score=score, probability=0.4,
                      top_k=[{"answer_id": "track_order", "cosine": 0.61, "probability": 0.4}], latency_ms=12.5,
                      reply_key=reply_key)


def _round_with_rows(log: Log, turn_ids: list[list[str]]) -> int:
    round_id = log.start_round("v0001", "statistical", {"sample": {"k": 2}}, 1)
    log.save_round_rows(
        round_id, [RoundPrompt(prompt_id=n, text=f"prompt {n}", turn_ids=ids) for n, ids in enumerate(turn_ids)],
        [CandidateRow(prompt_id=n, draw=d, candidate_key=f"key{n}{d}", candidate_text=f"reply {n}{d}",
                      answer_id=f"key{n}{d}", topic="t", q=0.5, cosine=0.5, similarity=0.5 + d / 10,
                      rating_up=1.0, rating_down=0.0, rating=0.6, reward=1.0 + d, accept_probability=0.5,
                      accepted=d == 0, rule="statistical", sampled_by="v0001")
         for n in range(len(turn_ids)) for d in range(2)])
    return round_id


# ---- conversations --------------------------------------------------------------------------------------------


def test_turns_are_logged_with_everything_needed_later(log):
    turn_id = log.log_turn(_turn())
    row = log.turn(turn_id)
    assert len(turn_id) == 32 and isinstance(row, Turn)
    assert row["sender_id"] == "alice" and row["model_version"] == "v0001"
    assert row["top_k"][0]["answer_id"] == "track_order" and row["rating"] is None
    assert row.reply_key == "track_order"  # a retrieval reply's key is its answer id
    assert log.turn("0" * 32) is None


def test_a_reply_without_an_answer_id_is_logged_by_its_key(log):
    turn_id = log.log_turn(_turn(answer=None, reply_key="sha1:abc"))
    assert log.turn(turn_id).answer_id is None and log.turn(turn_id).reply_key == "sha1:abc"


def test_a_written_reply_keeps_how_it_was_written_and_a_bank_answer_has_none(log):
    writing = {"grounding_ids": ["return_policy", "refund_time"], "fallback": True, "reason": "timeout",
               "prompt_tokens": 151, "new_tokens": 9, "writer_ms": 5012.5}
    written = log.log_turn(replace(_turn(answer="return_policy", reply_key="gen-0123456789abcdef"), writing=writing))
    retrieved = log.log_turn(_turn())
    assert log.turn(written).writing == writing and log.turn(written).reply_key == "gen-0123456789abcdef"
    assert log.turn(retrieved).writing is None
    assert [t.writing for t in log.conversation("alice")] == [writing, None]
    assert {t.id: t.to_dict()["writing"] for t in log.iter_turns()} == {written: writing, retrieved: None}


def test_a_rated_written_reply_is_read_for_rounds_with_its_text_a_bank_answer_without(log):
    """A 👍'd written reply can become a round's trusted reference (stages/score.py), so its text comes with it; a
    bank answer's text is the bank's, so it is not read again for every rated turn."""
    written = log.log_turn(replace(_turn(answer="return_policy", reply_key="gen-0123456789abcdef"),
                                   answer_text="Returns are free within 30 days."))
    retrieved = log.log_turn(_turn())
    for turn_id in (written, retrieved):
        log.rate(turn_id, "alice", 1)
    texts = {t.id: t.answer_text for t in log.rated_turns()}
    assert texts == {written: "Returns are free within 30 days.", retrieved: None}
    assert [t.answer_text for t in log.rated_turns(newest=1)] == [None]
    assert {t.answer_text for t in log.rated_turns(only_turn_ids={written})} == {"Returns are free within 30 days."}

def test_a_rating_lands_on_its_turn_and_a_new_one_replaces_it(log):
    first, second = log.log_turn(_turn()), log.log_turn(_turn(text="and my refund?"))
    assert log.rate(first, "alice", 1).replaced is False
    assert log.rate(first, "alice", 0).replaced is True
    assert log.turn(first)["rating"] == 0 and log.turn(second)["rating"] is None
    assert log.count("ratings") == 1


@pytest.mark.parametrize("turn_id, sender, score, message", [
    ("0" * 32, "alice", 1, "no answer with that id"),
    (None, "mallory", 1, "another conversation"),
    (None, "alice", 2, "0 or 1"),
])
def test_refused_ratings_write_nothing(log, turn_id, sender, score, message):
    real = log.log_turn(_turn())
    log.rate(real, "alice", 1)
    with pytest.raises(RatingRefused, match=message):
        log.rate(turn_id or real, sender, score)
    assert log.count("ratings") == 1 and log.turn(real)["rating"] == 1


def test_ratings_per_minute_are_capped(log):
    turns = [log.log_turn(_turn(text=f"q{n}")) for n in range(3)]
    log.rate(turns[0], "alice", 1, max_per_minute=2)
    log.rate(turns[1], "alice", 1, max_per_minute=2)
    with pytest.raises(RatingRefused, match="a lot of ratings"):
        log.rate(turns[2], "alice", 1, max_per_minute=2)
    assert log.count("ratings") == 2 and log.ratings_since(None) == 2


def test_the_cap_counts_attempts_so_flipping_one_turn_is_capped_too(log, tmp_path):
    turn_id = log.log_turn(_turn())
    for n in range(5):
        log.rate(turn_id, "alice", n % 2, max_per_minute=5)
    with pytest.raises(RatingRefused, match="a lot of ratings"):
        log.rate(turn_id, "alice", 1, max_per_minute=5)
    assert log.turn(turn_id)["rating"] == 0 and log.count("ratings") == 1  # the refused flip wrote nothing
    # Refused calls count too, and another sender has their own budget.
    with pytest.raises(RatingRefused, match="a lot of ratings"):
        log.rate(turn_id, "alice", 1, max_per_minute=6)
    bobs = log.log_turn(_turn(sender="bob"))
    assert log.rate(bobs, "bob", 1, max_per_minute=5).score == 1


def test_sqlite_rating_attempts_are_shared_between_processes_and_pruned(tmp_path):
    first, second = open_sqlite(tmp_path / "rsft.db"), open_sqlite(tmp_path / "rsft.db")  # two action servers
    try:
        turn_id = first.log_turn(_turn())
        first.rate(turn_id, "alice", 1, max_per_minute=2)
        second.rate(turn_id, "alice", 0, max_per_minute=2)
        with pytest.raises(RatingRefused, match="a lot of ratings"):
            first.rate(turn_id, "alice", 1, max_per_minute=2)
        assert second.turn(turn_id)["rating"] == 0
        first.db.execute("UPDATE rating_attempts SET at = '2000-01-01T00:00:00.000+00:00'")  # a minute later
        assert second.rate(turn_id, "alice", 1, max_per_minute=2).replaced is True
        assert first.db.execute("SELECT count(*) FROM rating_attempts").fetchone()[0] == 1  # the old ones pruned
    finally:
        first.close()
        second.close()


def test_sql_looking_text_is_stored_verbatim(log):
    hostile = "'); DROP TABLE turns; -- \u202e\x00 ☃"
    turn_id = log.log_turn(_turn(text=hostile))
    assert log.turn(turn_id)["user_text"] == hostile
    assert log.count("turns") == 1
    with pytest.raises(ValueError):
        log.count("sqlite_master")


def test_recent_turns_newest_first_and_per_sender(log):
    for n in range(3):
        log.log_turn(_turn(text=f"q{n}"))
    log.log_turn(_turn(sender="bob", text="bob's"))
    assert [t["user_text"] for t in log.recent_turns(2)] == ["bob's", "q2"]
    assert [t["user_text"] for t in log.recent_turns(10, "alice")] == ["q2", "q1", "q0"]


def test_turn_queries_for_rounds(log):
    a, b, c = (log.log_turn(_turn(text=f"q{n}")) for n in range(3))
    log.rate(a, "alice", 1)
    log.rate(c, "alice", 0)
    assert [t.id for t in log.rated_turns()] == [a, c]
    assert [t.id for t in log.rated_turns(exclude_turn_ids={a})] == [c]
    stamp = log.turn(b).created_at
    assert [t.id for t in log.turns_for_round(None, 10)] == [c, b, a]
    before = log.turns_before(stamp, 10)
    assert b in [t.id for t in before] and all(t.created_at <= stamp for t in before)
    assert log.ratings_since("9999") == 0


def test_rated_turns_among_given_ids_reads_only_those(log):
    """The gate's read: the rated turns among the kept-out ones, not every rated turn ever logged (issue 13)."""
    ids = [log.log_turn(_turn(text=f"q{n}")) for n in range(5)]
    for turn_id in ids:
        log.rate(turn_id, "alice", 1)
    unrated = log.log_turn(_turn(text="unrated"))
    wanted = {ids[3], ids[1], unrated, *(f"{n:032x}" for n in range(1500))}  # more ids than one query names
    assert [t.id for t in log.rated_turns(only_turn_ids=wanted)] == [ids[1], ids[3]]
    assert log.rated_turns(only_turn_ids=set()) == []


def test_the_newest_rated_turns_are_read_oldest_first_skipping_the_kept_out(log):
    """Score's read (issue 13): the newest N rated turns, bounded by N, not by every rating ever given. Turns kept
    out for the gate do not count toward N; unrated turns are never read."""
    ids = [log.log_turn(_turn(text=f"q{n}")) for n in range(8)]
    for turn_id in ids[:7]:  # the newest turn stays unrated
        log.rate(turn_id, "alice", 1)
    assert [t.id for t in log.rated_turns(newest=3)] == ids[4:7]
    assert [t.id for t in log.rated_turns(newest=3, exclude_turn_ids={ids[5], ids[6]})] == [ids[2], ids[3], ids[4]]
    assert [t.id for t in log.rated_turns(newest=100)] == [t.id for t in log.rated_turns()] == ids[:7]
    assert log.rated_turns(newest=0) == []
    every_id_kept_out = set(ids)
    assert log.rated_turns(newest=3, exclude_turn_ids=every_id_kept_out) == []


def test_the_newest_signals_are_read_oldest_first_skipping_the_kept_out_turns(log):
    ids = [log.log_turn(_turn(text=f"q{n}")) for n in range(6)]
    for turn_id in ids:
        log.record_signal(turn_id, "alice", "none_of_these", None)
    for turn_id in ids[3:]:  # a second signal on each of the three newest turns
        log.record_signal(turn_id, "alice", "reask", "track_order")
    every = log.signals()
    assert log.signals(newest=4) == every[-4:]
    kept_out = {ids[4], ids[5]}  # four of the newest signals are about these turns: a second page is read
    assert log.signals(newest=3, exclude_turn_ids=kept_out) == [s for s in every if s.turn_id not in kept_out][-3:]
    assert log.signals(newest=50) == every and log.signals(newest=0) == []
    assert log.signals(newest=2, sender_id="bob") == []


def test_rating_counts_per_version_and_window_for_the_live_guard(log):
    ids = [log.log_turn(_turn(sender=f"s{n}", text=f"q{n}", version=v))
           for n, v in enumerate(["v0001", "v0001", "v0001", "v0002", "v0001"])]
    for turn_id, sender, score in zip(ids, [f"s{n}" for n in range(5)], [1, 0, 1, 0, 1], strict=True):
        log.rate(turn_id, sender, score)
    unrated = log.log_turn(_turn(sender="s9", version="v0001"))
    not_understood = log.log_turn(_turn(sender="s8", version="v0001", answer=None, reply_key="not_understood"))
    log.rate(not_understood, "s8", 0)
    assert log.version_rating_counts("v0001").to_dict() == {"up": 3, "down": 2}
    assert log.version_rating_counts("v0001", exclude_reply_key="not_understood").to_dict() == {"up": 3, "down": 1}
    assert log.version_rating_counts("v0002").to_dict() == {"up": 0, "down": 1}
    assert log.version_rating_counts("v0009").to_dict() == {"up": 0, "down": 0}
    nothing, everything = {"up": 0, "down": 0}, {"up": 3, "down": 2}
    assert log.version_rating_counts("v0001", since="9999").to_dict() == nothing
    assert log.version_rating_counts("v0001", until="0000").to_dict() == nothing
    assert log.version_rating_counts("v0001", since="0000", until="9999").to_dict() == everything
    # newest: by time, ties in insertion order (several turns can share a millisecond)
    assert log.version_rating_counts("v0001", newest=1).to_dict() == {"up": 0, "down": 1}  # the not-understood one
    assert log.version_rating_counts("v0001", newest=1, exclude_reply_key="not_understood").to_dict() == {
        "up": 1, "down": 0}
    assert log.version_rating_counts("v0001", newest=3, exclude_reply_key="not_understood").to_dict() == {
        "up": 2, "down": 1}
    assert log.turn(unrated).rating is None


def test_inbox_filters_sorts_and_facets(log):
    first = log.log_turn(_turn("alice", "where is my parcel?", "track_order", 0.62))
    second = log.log_turn(_turn("alice", "it still has not come", "delayed_delivery", 0.31, "v0002"))
    log.rate(second, "alice", 0)
    log.rate(first, "alice", 1)
    log.rate(log.log_turn(_turn("bob", "can I pay with PayPal?", "payment_methods", 0.7)), "bob", 1)
    log.log_turn(_turn("carol", "100% off_code? ' OR 1=1 --", "promo_code", 0.45))
    total, rows = log.conversations()
    assert total == 3 and all(isinstance(r, ConversationSummary) for r in rows)
    alice = next(r for r in rows if r.sender_id == "alice")
    assert (alice.turns, alice.up, alice.down, alice.versions) == (2, 1, 1, ["v0001", "v0002"])
    assert [r.sender_id for r in log.conversations(rating="down")[1]] == ["alice"]
    assert {r.sender_id for r in log.conversations(rating="unrated")[1]} == {"carol"}
    assert [r.sender_id for r in log.conversations(score_below=0.4)[1]] == ["alice"]
    assert [r.sender_id for r in log.conversations(topic="payment_methods")[1]] == ["bob"]
    assert [r.sender_id for r in log.conversations(version="v0002")[1]] == ["alice"]
    assert [r.sender_id for r in log.conversations(text="off_code")[1]] == ["carol"]  # _ is not a wildcard
    assert [r.sender_id for r in log.conversations(text="100%")[1]] == ["carol"]
    assert log.conversations(text="zzz") == (0, [])
    assert log.conversations(sort="down_first")[1][0].sender_id == "alice"
    assert log.conversations(sort="lowest_score")[1][0].sender_id == "alice"
    assert log.conversations(limit=1, offset=1)[0] == 3 and len(log.conversations(limit=1, offset=1)[1]) == 1
    for bad in ({"rating": "meh"}, {"sort": "random"}):
        with pytest.raises(ValueError):
            log.conversations(**bad)
    facets = log.turn_facets()
    assert facets.conversations == 3 and "promo_code" in facets.topics and facets.versions == ["v0001", "v0002"]
    assert [t.user_text for t in log.conversation("alice")] == ["where is my parcel?", "it still has not come"]
    assert log.conversation("nobody") == []


def test_iter_turns_reads_everything_in_batches_oldest_first(log):
    ids = [log.log_turn(_turn(f"s{i}", f"question {i}")) for i in range(5)]
    log.rate(ids[0], "s0", 1)
    turns = list(log.iter_turns(batch=2))
    assert [t["id"] for t in turns] == ids and turns[0].rating == 1 and turns[1].rating is None


# ---- choices and implicit signals -----------------------------------------------------------------------------


def test_a_signal_is_recorded_with_its_turns_question_and_version(log):
    turn_id = log.log_turn(_turn("alice", "where is my parcel", version="v0002"))
    log.rate(turn_id, "alice", 0)
    signal = log.record_signal(turn_id, "alice", "choice", "delivery_period")
    assert (signal.turn_id, signal.sender_id, signal.kind, signal.reply_key) == (turn_id, "alice", "choice",
                                                                               "delivery_period")
    assert (signal.user_text, signal.model_version, signal.served_key) == ("where is my parcel", "v0002",
                                                                           "track_order")
    assert log.signals() == [signal] and log.count("signals") == 1
    assert log.signals(model_version="v0001") == [] and log.signals(sender_id="bob") == []
    assert log.signals(exclude_turn_ids={turn_id}) == []
    assert log.signals(since=signal.created_at) == [signal] and log.signals(until=signal.created_at) == []


def test_a_turn_takes_one_choice_and_one_implicit_signal(log):
    turn_id = log.log_turn(_turn())
    log.record_signal(turn_id, "alice", "none_of_these", None)
    with pytest.raises(SignalRefused, match="already answered"):
        log.record_signal(turn_id, "alice", "choice", "returns")
    log.record_signal(turn_id, "alice", "reask", "track_order")
    with pytest.raises(SignalRefused, match="already has a signal"):
        log.record_signal(turn_id, "alice", "thanks", "track_order")
    assert [s.kind for s in log.signals()] == ["none_of_these", "reask"]


def test_a_missed_turn_takes_one_resolved_signal_beside_its_other_signals_and_a_picked_one_none(log):
    missed, picked = log.log_turn(_turn()), log.log_turn(_turn(text="where is my parcel"))
    log.record_signal(missed, "alice", "none_of_these", None)
    log.record_signal(missed, "alice", "reask", "track_order")
    log.record_signal(missed, "alice", "resolved", "delivery_period")
    with pytest.raises(SignalRefused, match="already settled"):
        log.record_signal(missed, "alice", "resolved", "returns")
    log.record_signal(picked, "alice", "choice", "returns")
    with pytest.raises(SignalRefused, match="already settled"):
        log.record_signal(picked, "alice", "resolved", "returns")
    assert [(s.kind, s.reply_key) for s in log.signals(sender_id="alice") if s.turn_id == missed] == [
        ("none_of_these", None), ("reask", "track_order"), ("resolved", "delivery_period")]


def test_the_to_label_filter_finds_the_missed_turns_no_operator_labelled_yet(log):
    """Missed: rated 👎 with no pick, "None of these" (up front, unrated), or not understood; a pick, a `resolved`
    answer or a label settles a turn, a 👍 or no word at all does not make it missed."""
    turns = {name: log.log_turn(_turn(sender=name, reply_key=key)) for name, key in (
        ("down", None), ("none", None), ("unknown", NOT_UNDERSTOOD), ("picked", None), ("resolved", None),
        ("labelled", None), ("up", None), ("silent", None))}
    for name in ("down", "picked", "resolved", "labelled"):
        log.rate(turns[name], name, 0)
    log.rate(turns["up"], "up", 1)
    log.record_signal(turns["none"], "none", "none_of_these", None)
    log.record_signal(turns["picked"], "picked", "choice", "returns")
    log.record_signal(turns["resolved"], "resolved", "resolved", "returns")
    log.record_signal(turns["labelled"], "labelled", "label", "returns")
    total, rows = log.conversations(rating="to_label")
    assert total == 3 and {r.sender_id for r in rows} == {"down", "none", "unknown"}
    log.record_signal(turns["down"], "down", "label", "returns")
    assert {r.sender_id for r in log.conversations(rating="to_label")[1]} == {"none", "unknown"}


def test_a_turn_takes_any_number_of_labels_beside_its_customers_signals(log):
    turn_id = log.log_turn(_turn())
    log.record_signal(turn_id, "alice", "choice", "returns")
    log.record_signal(turn_id, "alice", "label", "delivery_period")
    log.record_signal(turn_id, "alice", "label", "track_order")
    assert [(s.kind, s.reply_key) for s in log.signals()] == [
        ("choice", "returns"), ("label", "delivery_period"), ("label", "track_order")]


@pytest.mark.parametrize(("turn", "sender", "kind", "key", "why"), [
    ("mine", "bob", "choice", "returns", "another conversation"),
    ("0" * 32, "alice", "choice", "returns", "no answer with that id"),
    ("mine", "alice", "like", "returns", "a signal is one of"),
    ("mine", "alice", "choice", None, "names the answer"),
    ("mine", "alice", "resolved", None, "names the answer"),
    ("mine", "bob", "resolved", "returns", "another conversation"),
    ("mine", "alice", "label", None, "names the answer"),
    ("mine", "bob", "label", "returns", "another conversation"),
])
def test_a_bad_signal_is_refused_and_nothing_is_written(log, turn, sender, kind, key, why):
    mine = log.log_turn(_turn())
    with pytest.raises(SignalRefused, match=why):
        log.record_signal(mine if turn == "mine" else turn, sender, kind, key)
    assert log.count("signals") == 0


def test_signals_share_the_per_sender_cap_with_ratings(log):
    turns = [log.log_turn(_turn(text=f"q{n}")) for n in range(4)]
    log.rate(turns[0], "alice", 0, max_per_minute=3)
    log.record_signal(turns[0], "alice", "choice", "returns", max_per_minute=3)
    log.record_signal(turns[1], "alice", "reask", "track_order", max_per_minute=3)
    with pytest.raises(SignalRefused, match="a lot of clicks"):
        log.record_signal(turns[2], "alice", "thanks", "track_order", max_per_minute=3)
    with pytest.raises(RatingRefused):
        log.rate(turns[3], "alice", 1, max_per_minute=3)
    assert log.count("signals") == 2 and log.count("ratings") == 1


# ---- privacy and maintenance -----------------------------------------------------------------------------------


def test_forget_removes_a_sender_everywhere_including_rounds(log):
    mine = [log.log_turn(_turn("alice", f"q{n}")) for n in range(2)]
    theirs = log.log_turn(_turn("bob", "bob's"))
    log.rate(mine[0], "alice", 1)
    log.rate(theirs, "bob", 0)
    round_id = _round_with_rows(log, [[mine[0]], [mine[1], theirs]])
    log.set_handoff_contact(log.open_handoff("alice", "asked", "v0001").id, "alice@example.com")
    bobs_handoff = log.open_handoff("bob", "low_score", "v0001")
    log.record_signal(mine[0], "alice", "choice", "returns")
    log.record_signal(theirs, "bob", "reask", "track_order")
    removed = log.forget("alice")
    assert removed == {"turns": 2, "ratings": 1, "round_prompts": 1, "handoffs": 1, "signals": 1}
    assert [s.sender_id for s in log.signals()] == ["bob"]
    assert log.handoffs(sender_id="alice") == [] and [h.id for h in log.handoffs()] == [bobs_handoff.id]
    assert log.recent_turns(10, "alice") == [] and log.turn(theirs) is not None and log.count("ratings") == 1
    examples = log.training_examples(round_id)
    assert [e.turn_ids for e in examples] == [[theirs]]  # the shared prompt keeps only bob's turn
    assert [c.prompt_id for c in log.round_candidates(round_id)] == [1, 1]
    assert log.forget("nobody") == {"turns": 0, "ratings": 0, "round_prompts": 0, "handoffs": 0, "signals": 0}


def test_redaction_of_old_turns_happens_once(log):
    old = log.log_turn(_turn(text="mail me: a@b.example"))
    calls = []

    def redact(text: str) -> str:
        calls.append(text)
        return text.replace("a@b.example", "[EMAIL]")

    assert log.redact_older_than("9999-01-01", redact) == 1
    assert log.turn(old).user_text == "mail me: [EMAIL]" and log.turn(old).redacted is True
    assert log.redact_older_than("9999-01-01", redact) == 0 and len(calls) == 2
    assert log.redact_older_than("2000-01-01", redact) == 0


def test_backup_copies_everything_and_refuses_to_overwrite(log, tmp_path):
    turn_id = log.log_turn(_turn())
    log.rate(turn_id, "alice", 1)
    log.record_signal(turn_id, "alice", "thanks", "track_order")
    _round_with_rows(log, [["x"]])
    log.open_handoff("alice", "asked", "v0001")
    counts = log.backup(tmp_path / "backups" / "copy.db")
    assert counts == {"turns": 1, "ratings": 1, "rounds": 1, "round_prompts": 1, "round_candidates": 2,
                      "handoffs": 1, "signals": 1}
    with pytest.raises(FileExistsError):
        log.backup(tmp_path / "backups" / "copy.db")


# ---- hand-offs ------------------------------------------------------------------------------------------------


def test_a_handoff_is_recorded_open_with_reason_version_and_no_contact_yet(log):
    recorded = log.open_handoff("alice", "asked", "v0001")
    assert isinstance(recorded, Handoff) and recorded == log.handoff(recorded.id)
    assert (recorded.sender_id, recorded.reason, recorded.model_version, recorded.status) == (
        "alice", "asked", "v0001", "open")
    assert (recorded.contact, recorded.contact_state, recorded.taken_by) == (None, "pending", None)
    assert recorded.created_at and log.handoff(recorded.id + 1) is None
    with pytest.raises(ValueError, match="reason"):
        log.open_handoff("alice", "bored", "v0001")
    assert log.count("handoffs") == 1


def test_a_handoffs_contact_is_given_or_declined(log):
    given = log.set_handoff_contact(log.open_handoff("alice", "asked", "v0001").id, "alice@example.com")
    declined = log.set_handoff_contact(log.open_handoff("bob", "low_score", None).id, None)
    assert (given.contact, given.contact_state) == ("alice@example.com", "given")
    assert (declined.contact, declined.contact_state) == (None, "declined")
    with pytest.raises(KeyError):
        log.set_handoff_contact(999, "x@example.com")


def test_handoffs_are_taken_then_closed_and_every_other_move_is_refused(log):
    first = log.open_handoff("alice", "asked", "v0001")
    taken = log.move_handoff(first.id, "taken", "operator")
    assert (taken.status, taken.taken_by) == ("taken", "operator") and taken.taken_at
    with pytest.raises(Conflict):
        log.move_handoff(first.id, "taken", "someone else")  # nobody takes it from under the operator
    closed = log.move_handoff(first.id, "closed", "operator")
    assert (closed.status, closed.closed_by, closed.taken_by) == ("closed", "operator", "operator")
    with pytest.raises(Conflict):
        log.move_handoff(first.id, "closed", "operator")
    second = log.open_handoff("bob", "low_score", "v0001")
    assert log.move_handoff(second.id, "closed", "operator").status == "closed"  # closed without taking
    for bad in ("open", "lost"):
        with pytest.raises(ValueError):
            log.move_handoff(log.open_handoff("carol", "asked", "v1").id, bad, "operator")
    with pytest.raises(KeyError):
        log.move_handoff(999, "taken", "operator")


def test_the_handoff_queue_filters_by_status_and_sender_and_counts(log):
    ids = [log.open_handoff(sender, reason, "v0001").id
           for sender, reason in (("a", "asked"), ("b", "repeated_thumbs_down"), ("c", "low_score"))]
    log.move_handoff(ids[0], "taken", "operator")
    log.move_handoff(ids[1], "closed", "operator")
    assert [h.id for h in log.handoffs()] == ids[::-1]  # newest first
    assert [h.id for h in log.handoffs("open")] == [ids[2]] and [h.id for h in log.handoffs("taken")] == [ids[0]]
    assert [h.id for h in log.handoffs(sender_id="b")] == [ids[1]] and len(log.handoffs(limit=2)) == 2
    assert log.handoff_counts() == {"open": 1, "taken": 1, "closed": 1}
    with pytest.raises(ValueError):
        log.handoffs("lost")


def test_handoffs_per_version_against_the_turns_it_answered(log):
    for n in range(4):
        log.log_turn(_turn(text=f"q{n}", version="v0001"))
    log.log_turn(_turn(text="asdfgh", version="v0001", answer=None, reply_key="not_understood"))
    log.log_turn(_turn(text="q", version="v0002"))
    log.open_handoff("alice", "asked", "v0001")
    log.open_handoff("bob", "low_score", "v0003")
    log.open_handoff("carol", "asked", None)
    rows = log.handoffs_by_version("not_understood")
    assert all(isinstance(r, VersionHandoffs) for r in rows)
    assert [(r.model_version, r.handoffs, r.answered_turns) for r in rows] == [
        ("v0001", 1, 4), ("v0002", 0, 1), ("v0003", 1, 0)]
    assert rows[0].per_100_answers == 25.0 and rows[2].per_100_answers is None


def test_retention_redacts_handoff_contacts_once(log):
    log.set_handoff_contact(log.open_handoff("alice", "asked", "v1").id, "alice@example.com")
    log.set_handoff_contact(log.open_handoff("bob", "asked", "v1").id, None)
    calls = []

    def redact(text: str) -> str:
        calls.append(text)
        return "[EMAIL]"

    assert log.redact_handoff_contacts_older_than("2000-01-01", redact) == 0
    assert log.redact_handoff_contacts_older_than("9999-01-01", redact) == 1
    assert log.redact_handoff_contacts_older_than("9999-01-01", redact) == 0 and calls == ["alice@example.com"]
    assert [h.contact for h in log.handoffs()] == [None, "[EMAIL]"]


# ---- rounds ---------------------------------------------------------------------------------------------------


def test_round_lifecycle_as_typed_records(log):
    round_id = log.start_round("v0001", "statistical", {"sample": {"k": 4}}, 4242)
    running = log.round(round_id)
    assert isinstance(running, RoundRecord)
    assert (running.status, running.stage, running.progress, running.params) == (
        "running", "starting", 0.0, {"sample": {"k": 4}})
    log.update_round(round_id, stage="sample", progress=0.5, message="drawing")
    log.update_round(round_id, status="promoted", new_version="v0002", reason="better",
                     stats={"accepted": 3, "gate": {"live_accuracy": 0.5}}, stage_seconds={"sample": 1.5},
                     finished_at="2025-01-01T00:00:00", report_dir="/tmp/r")
    done = log.round(round_id)
    assert (done.status, done.new_version, done.stats["accepted"], done.gate, done.stage_seconds) == (
        "promoted", "v0002", 3, {"live_accuracy": 0.5}, {"sample": 1.5})
    assert log.last_completed_round_start() == done.started_at
    second = log.start_round("v0002", "threshold", {}, 1)
    assert [r.id for r in log.rounds()] == [second, round_id] and [r.id for r in log.rounds(1)] == [second]
    assert log.round(999) is None
    with pytest.raises(ValueError):
        log.update_round(round_id, colour="red")


def test_prompts_candidates_and_training_examples_with_provenance(log):
    round_id = _round_with_rows(log, [["t1", "t2"], ["t3"]])
    candidates = log.round_candidates(round_id)
    assert [(c.prompt_id, c.draw, c.candidate_key, c.accepted) for c in candidates] == [
        (0, 0, "key00", True), (0, 1, "key01", False), (1, 0, "key10", True), (1, 1, "key11", False)]
    examples = log.training_examples(round_id)
    assert all(isinstance(e, TrainingExample) for e in examples)
    assert [(e.prompt, e.candidate_key, e.candidate_text, e.turn_ids) for e in examples] == [
        ("prompt 0", "key00", "reply 00", ["t1", "t2"]), ("prompt 1", "key10", "reply 10", ["t3"])]
    assert len(log.training_examples()) == 2 and log.training_examples(round_id + 1) == []
    total, rejected = log.round_examples(round_id, False, limit=1)
    assert total == 2 and len(rejected) == 1 and rejected[0].prompt in ("prompt 0", "prompt 1")
    assert not rejected[0].accepted and rejected[0].reward == 2.0


def test_saving_round_rows_is_all_or_nothing(log):
    round_id = log.start_round("v0001", "statistical", {}, 1)
    prompt = RoundPrompt(prompt_id=0, text="p", turn_ids=[])
    with pytest.raises(Exception):  # noqa: B017 - the same prompt twice violates the key (backend's own error)
        log.save_round_rows(round_id, [prompt, prompt], [])
    assert log.count("round_prompts") == 0


# ---- answer-bank edits -------------------------------------------------------------------------------------------


def test_answer_revisions(log):
    log.add_answer_revision("gift_wrap", "gift_wrap", "orders", "text one", "add")
    log.add_answer_revision("warranty", "warranty", "products", "text w", "edit")
    newest = log.add_answer_revision("gift_wrap", "gift_wrap", "orders", "text two", "edit", "why")
    assert isinstance(newest, AnswerRevision) and newest["note"] == "why" and newest["id"] == 3
    assert [(r["answer_id"], r["text"]) for r in log.latest_answer_revisions()] == [
        ("gift_wrap", "text two"), ("warranty", "text w")]
    assert [r["text"] for r in log.answer_revisions("gift_wrap")] == ["text two", "text one"]
    assert len(log.answer_revisions(limit=2)) == 2
    with pytest.raises(ValueError):
        log.add_answer_revision("x_y", "x_y", "orders", "text", "delete")


# ---- jobs -----------------------------------------------------------------------------------------------------


def test_job_state_machine(log):
    job = log.start_job("round", 4242, ALIVE, status="queued")
    assert isinstance(job, Job) and (job.status, job.pid, job.started_at) == ("queued", 4242, None)
    log.update_job(job.id, status="running", pid=4343)
    running = log.job(job.id)
    assert (running.status, running.pid, running.active) == ("running", 4343, True) and running.started_at
    log.update_job(job.id, status="finished", message="promoted")
    done = log.job(job.id)
    assert (done.status, done.message, done.active) == ("finished", "promoted", False) and done.finished_at
    with pytest.raises(ValueError):
        log.update_job(job.id, status="running")  # finished is final
    with pytest.raises(ValueError):
        log.update_job(job.id, status="paused")
    with pytest.raises(ValueError):
        log.start_job("coffee", 1, ALIVE)
    assert log.jobs(active_only=True) == [] and [j.id for j in log.jobs()] == [job.id]


def test_one_exclusive_job_at_a_time_unless_its_process_died(log):
    first = log.start_job("publish_bank", 4242, ALIVE)
    with pytest.raises(JobBusy) as busy:
        log.start_job("round", 4343, ALIVE)
    assert busy.value.job.id == first.id
    log.start_job("round", 4444, ALIVE, exclusive=False)  # a round holding the round lock records itself anyway
    second = log.start_job("publish_bank", 4343, lambda pid: pid not in (4242, 4444))
    assert log.job(first.id).status == "failed" and log.job(second.id).status == "running"


def test_abandoned_jobs_fail_with_their_round_and_publication(log):
    round_job = log.start_job("round", 4242, ALIVE, exclusive=False)
    round_id = log.start_round("v0001", "statistical", {}, 4242, round_job.id)
    publication_job = log.start_job("publish_bank", 4343, ALIVE, exclusive=False)
    publication_id = log.start_publication(publication_job.id)
    assert isinstance(log.publication(publication_id), Publication)
    assert log.publication(publication_id).status == "running" and log.publication(publication_id).pid == 4343
    finished = log.start_job("round", 4444, ALIVE, exclusive=False)
    log.update_job(finished.id, status="finished")
    assert log.fail_abandoned(ALIVE) == []
    assert log.round(round_id).status == "running"  # reads never mark anything
    failed = log.fail_abandoned(DEAD)
    assert sorted(j.id for j in failed) == sorted([round_job.id, publication_job.id])
    assert log.round(round_id).status == "failed" and "ended without finishing" in log.round(round_id).reason
    assert log.publication(publication_id).status == "failed"
    assert "ended without finishing" in log.publications(1)[0].message
    assert log.job(finished.id).status == "finished"
    log.update_publication(publication_id, live_version="v0001")
    with pytest.raises(ValueError):
        log.update_publication(publication_id, colour="red")


# ---- SQLite only ----------------------------------------------------------------------------------------------


def test_sqlite_file_is_wal_and_reopening_keeps_data_and_schema(tmp_path):
    log = open_sqlite(tmp_path / "rsft.db")
    turn_id = log.log_turn(_turn())
    log.close()
    reopened = open_sqlite(tmp_path / "rsft.db")
    assert reopened.turn(turn_id)["user_text"] == "where is my order"
    reopened.close()
    with sqlite3.connect(tmp_path / "rsft.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_sqlite_migrates_a_version_3_log_and_back_fills_keys(tmp_path):
    from rsft_plugin.log.sqlite import migrations

    path = tmp_path / "old.db"
    import sqlite_utils

    db = sqlite_utils.Database(path)
    db["meta"].create({"key": str, "value": str}, pk="key")
    for version in (1, 2, 3):
        migrations._MIGRATIONS[version](db)
    db["meta"].upsert({"key": "schema_version", "value": "3"}, pk="key")
    db["turns"].insert({"id": "t1", "sender_id": "s", "user_text": "q", "answer_id": "track_order",
                        "model_version": "v1", "created_at": "2025-01-01", "top_k": "[]"})
    db["ratings"].insert({"turn_id": "t1", "sender_id": "s", "score": 1, "created_at": "x", "updated_at": "x"})
    db["rounds"].insert({"id": 1, "status": "running", "stage": "sample", "progress": 0.1, "message": "",
                         "started_at": "2025-01-01", "live_version": "v1", "rule": "statistical", "pid": 999999})
    db["round_prompts"].insert({"round_id": 1, "prompt_id": 0, "text": "q", "turn_ids": json.dumps(["t1"])})
    db["round_candidates"].insert({"round_id": 1, "prompt_id": 0, "draw": 0, "answer_id": "track_order",
                                   "topic": "track_order", "q": 0.5, "reward": 1.0, "accept_probability": 1.0,
                                   "accepted": 1, "rule": "statistical", "sampled_by": "v1"})
    db.conn.close()
    log = open_sqlite(path)
    try:
        assert log.turn("t1").reply_key == "track_order" and log.turn("t1").rating == 1
        assert [e.candidate_key for e in log.training_examples(1)] == ["track_order"]
        assert [j.kind for j in log.jobs(active_only=True)] == ["round"]  # the running round got a job
        log.fail_abandoned(DEAD)
        assert log.round(1).status == "failed"
        log.log_turn(_turn(answer=None, reply_key="k"))  # answer_id is nullable now
        assert log.turn("t1").writing is None  # schema 8: turns from before it were not written
    finally:
        log.close()
