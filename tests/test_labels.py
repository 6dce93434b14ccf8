"""Operator labels (labels.py): recorded only for a real turn and a real answer, read by a round as the turn's
evidence in place of the customer's, and learnt by a whole round even where the model never offered the answer."""

from __future__ import annotations

import json

import pytest

from rsft_plugin.answer_bank import AnswerBank
from rsft_plugin.config import FeedbackConfig
from rsft_plugin.errors import InputError, NotFound
from rsft_plugin.golden import load_golden
from rsft_plugin.labels import record_label
from rsft_plugin.log import LABEL, TurnRecord, open_sqlite
from rsft_plugin.models.registry import Registry
from rsft_plugin.stages.evidence import CHOICE, known_labels, signal_evidence, unlabelled

from .conftest import feed_traffic, round_config, run_round

pytestmark = pytest.mark.timeout(600)


def _turn(sender: str, text: str, answer_id: str) -> TurnRecord:
    return TurnRecord(sender_id=sender, message_id=None, user_text=text, answer_id=answer_id, answer_topic=answer_id,
                      answer_text=f"answer {answer_id}", model_version="v0001", score=0.6, probability=0.5,
                      top_k=[{"answer_id": answer_id, "topic": answer_id, "cosine": 0.6, "probability": 0.5}],
                      latency_ms=5.0)


@pytest.fixture
def store(tmp_path):
    store = open_sqlite(tmp_path / "rsft.db")
    yield store
    store.close()


def test_a_label_is_recorded_under_the_turns_sender_and_a_later_one_is_recorded_too(store, bank):
    turn_id = store.log_turn(_turn("alice", "my parcel never came", bank.ids[0]))
    first = record_label(store, bank, turn_id, bank.ids[1])
    second = record_label(store, bank, turn_id, bank.ids[2])
    assert (first.kind, first.sender_id, first.reply_key, first.user_text) == (
        LABEL, "alice", bank.ids[1], "my parcel never came")
    assert second.reply_key == bank.ids[2]
    assert [s.reply_key for s in store.signals(sender_id="alice")] == [bank.ids[1], bank.ids[2]]


@pytest.mark.parametrize("turn, answer, error, message", [
    ("known", "nope_not_an_answer", InputError, "no answer 'nope_not_an_answer' in the answer bank"),
    ("known", "", InputError, "does not name an answer"),
    ("known", None, InputError, "does not name an answer"),
    ("known", ["a"], InputError, "does not name an answer"),
    ("short", "first", InputError, "does not say which answer"),
    ("0" * 32, "first", NotFound, "there is no answer with id"),
    (None, "first", InputError, "does not say which answer"),
])
def test_a_label_for_no_turn_or_no_answer_is_refused_and_nothing_is_written(store, bank, turn, answer, error,
                                                                            message):
    turn_id = store.log_turn(_turn("alice", "my parcel never came", bank.ids[0]))
    turn_id = turn_id if turn == "known" else turn
    with pytest.raises(error, match=message):
        record_label(store, bank, turn_id, bank.ids[0] if answer == "first" else answer)
    assert store.signals() == []


def test_a_labelled_turn_counts_only_its_newest_label_in_place_of_the_customers_evidence(store, bank):
    """The customer 👍'd a wrong answer and picked another one; the operator's newest label is all that counts for
    that turn, as a pick of label_weight. An unlabelled turn keeps its own evidence; with label_weight 0 labels
    are ignored and the customer's evidence counts again."""
    served, picked, wrong_label, right = bank.ids[:4]
    labelled = store.log_turn(_turn("alice", "my parcel never came", served))
    other = store.log_turn(_turn("bob", "can I pay by card", served))
    store.rate(labelled, "alice", 1)
    store.record_signal(labelled, "alice", "choice", picked)
    store.record_signal(other, "bob", "choice", picked)
    record_label(store, bank, labelled, wrong_label)
    record_label(store, bank, labelled, right)
    signals, rated = store.signals(), store.rated_turns()

    def votes(config: FeedbackConfig) -> set[tuple]:
        return {(v.turn_id, v.key, v.positive, v.weight, v.kind) for v in signal_evidence(signals, config, list)}

    config = FeedbackConfig()
    assert votes(config) == {(labelled, right, True, config.label_weight, CHOICE),
                             (other, picked, True, config.choice_weight, CHOICE)}
    assert [t.id for t in unlabelled(rated, signals, config)] == []
    off = FeedbackConfig(label_weight=0)
    assert votes(off) == {(labelled, picked, True, off.choice_weight, CHOICE),
                          (other, picked, True, off.choice_weight, CHOICE)}
    assert [t.id for t in unlabelled(rated, signals, off)] == [labelled]


def test_a_label_naming_an_answer_the_live_bank_lacks_waits_and_the_turn_keeps_its_own_evidence(store, bank):
    """An answer added in the console and not published yet: the round leaves its label out until it is."""
    working = AnswerBank.from_records([*bank.to_records(), {"id": "gift_wrapping", "topic": "gift_wrapping",
                                                            "text": "We gift-wrap any order for 3 euros."}])
    turn_id = store.log_turn(_turn("alice", "can you wrap it as a present", bank.ids[0]))
    store.record_signal(turn_id, "alice", "choice", bank.ids[1])
    record_label(store, working, turn_id, "gift_wrapping")
    before = known_labels(store.signals(), bank.ids)
    assert [s.kind for s in before] == ["choice"]
    assert [(v.key, v.kind) for v in signal_evidence(before, FeedbackConfig(), list)] == [(bank.ids[1], CHOICE)]
    assert [s.kind for s in known_labels(store.signals(), working.ids)] == ["choice", LABEL]


def test_a_round_learns_the_answers_operators_labelled_for_the_questions_it_missed(tmp_path, pretrained):
    """Golden traffic at 20 % wrong ratings; an operator labels every question whose customer answered "None of
    these" (the right answer was not among those offered) with its right answer. With 2 draws a round would rarely
    sample those answers; the labels make them candidates, trusted, and accepted for their questions."""
    config = round_config(tmp_path, sample={"k": 2, "named": True}, reject={"min_accepted": 5})
    registry = Registry(config.paths.models_dir)
    registry.set_live(registry.publish(pretrained).name, "test")
    feed_traffic(config, n=120)
    gold = {q.question: q.topic for q in load_golden(config.paths.golden, split="train")}
    answer_of = {a.topic: a.id for a in pretrained.bank.answers}
    store = open_sqlite(config.paths.db)
    try:
        missed = [s for s in store.signals() if s.kind == "none_of_these"]
        labels = {s.turn_id: record_label(store, pretrained.bank, s.turn_id, answer_of[gold[s.user_text]]).reply_key
                  for s in missed}
    finally:
        store.close()
    assert len(labels) >= 5
    result = run_round(config, show_bar=False)
    assert result.status == "promoted", result.reason
    assert result.stats["signals_used"].get(LABEL, 0) > 0
    store = open_sqlite(config.paths.db)
    try:
        turns_of = {prompt_id: json.loads(turn_ids) for prompt_id, turn_ids in store.db.execute(
            "SELECT prompt_id, turn_ids FROM round_prompts WHERE round_id = ? AND gate_only = 0",
            [result.round_id])}
        candidates = store.round_candidates(result.round_id)
    finally:
        store.close()
    wanted = {(prompt_id, labels[t]) for prompt_id, turns in turns_of.items() for t in turns if t in labels}
    found = {(c["prompt_id"], c["candidate_key"]): c for c in candidates}
    assert wanted and wanted <= found.keys(), "every labelled answer is a candidate for its question's prompt"
    accepted = sum(found[pair]["accepted"] for pair in wanted)
    assert accepted > len(wanted) / 2, f"only {accepted} of {len(wanted)} labelled answers accepted"
