"""The retrieval kind's example memory (models/memory.py) and what a round remembers (stages/memory.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rsft_plugin.answer_bank import AnswerBank
from rsft_plugin.errors import ModelLoadError
from rsft_plugin.log import TrainingExample
from rsft_plugin.models.memory import DEFAULT_THRESHOLD, MEMORY_FILE, MemoryRule, Remembered
from rsft_plugin.models.retrieval import ResponseModel
from rsft_plugin.stages.memory import read_remembered, remembered_examples

QUERY = "ok so how do I go about getting this stuff sent to me"
REMEMBERED = ["how do I get these things delivered", "when will my stuff be sent"]


def _runner_up(model: ResponseModel, query: str) -> str:
    return model.answer(query).top_k[1].key


def test_a_near_duplicate_of_a_remembered_question_raises_its_answer_and_leaves_the_others_alone(pretrained):
    target = _runner_up(pretrained, QUERY)
    plain = pretrained.cosines([QUERY])[0]
    asked, remembered = pretrained.encode([QUERY]), pretrained.encode(REMEMBERED)
    nearest = float((asked @ remembered.T).max())
    threshold = nearest - 0.3
    examples = [Remembered(q, target, (f"t{i}",), 1) for i, q in enumerate(REMEMBERED)]
    remembering = pretrained.remember(examples, MemoryRule(1.0, threshold))
    scores = remembering.cosines([QUERY])[0]
    position = pretrained.bank.index_of(target)
    assert scores[position] == pytest.approx(plain[position] + 1.0 * (nearest - threshold), abs=1e-5)
    others = np.arange(len(plain)) != position
    assert np.allclose(scores[others], plain[others], atol=1e-6)  # answers with nothing remembered: unchanged
    assert remembering.answer(QUERY).answer.id == target  # the runner-up now wins: its questions match
    assert remembering.policy(QUERY).sum() == pytest.approx(1.0)


def test_without_memory_is_the_same_version_scoring_by_answer_texts_alone(tmp_path, pretrained):
    remembering = pretrained.remember([Remembered(q, _runner_up(pretrained, QUERY), ("t",), 1) for q in REMEMBERED],
                                      MemoryRule(1.0, 0.0))
    remembering.save(tmp_path / "v0002", remembering.describe("v0002"))
    loaded = ResponseModel.load(tmp_path / "v0002")
    forgetful = loaded.without_memory()
    assert forgetful.name == "v0002" and len(forgetful.memory) == 0 and len(loaded.memory) == 2
    assert np.allclose(forgetful.cosines([QUERY]), pretrained.cosines([QUERY]), atol=1e-6)
    assert not np.allclose(loaded.cosines([QUERY]), pretrained.cosines([QUERY]), atol=1e-3)
    assert pretrained.without_memory() is pretrained


def test_a_remembered_question_below_the_threshold_adds_nothing(pretrained):
    target = _runner_up(pretrained, QUERY)
    nearest = float((pretrained.encode([QUERY]) @ pretrained.encode(REMEMBERED).T).max())
    examples = [Remembered(q, target, (f"t{i}",), 1) for i, q in enumerate(REMEMBERED)]
    remembering = pretrained.remember(examples, MemoryRule(1.0, min(0.99, nearest + 0.01)))
    assert len(remembering.memory) == 2
    assert np.allclose(remembering.cosines([QUERY]), pretrained.cosines([QUERY]), atol=1e-6)
    exact = remembering.cosines([REMEMBERED[0]])[0]  # a remembered question asked again is its own duplicate
    assert exact[pretrained.bank.index_of(target)] > pretrained.cosines([REMEMBERED[0]])[0][
        pretrained.bank.index_of(target)]


def test_no_weight_no_examples_or_unknown_answers_mean_no_memory(pretrained):
    plain = pretrained.cosines([QUERY])
    target = _runner_up(pretrained, QUERY)
    for model in (pretrained.remember([Remembered(QUERY, target, ("t",), 1)], MemoryRule(0.0)),
                  pretrained.remember([], MemoryRule(0.3)),
                  pretrained.remember([Remembered(QUERY, "no-such-answer", ("t",), 1)], MemoryRule(0.3))):
        assert len(model.memory) == 0 and np.allclose(model.cosines([QUERY]), plain, atol=1e-6)


def test_an_edited_bank_without_the_remembered_answer_stops_counting_it(pretrained):
    target = _runner_up(pretrained, QUERY)
    remembering = pretrained.remember([Remembered(QUERY, target, ("t",), 1)], MemoryRule(0.5, 0.3))
    smaller = AnswerBank(tuple(a for a in pretrained.bank.answers if a.id != target))
    assert np.allclose(remembering.with_bank(smaller).cosines([QUERY]),
                       pretrained.with_bank(smaller).cosines([QUERY]), atol=1e-6)


def test_a_saved_memory_loads_back_identical_and_holds_no_question_text(tmp_path, pretrained):
    target = _runner_up(pretrained, QUERY)
    remembering = pretrained.remember([Remembered(q, target, (f"turn-{i}",), 2) for i, q in enumerate(REMEMBERED)],
                                      MemoryRule(0.4, 0.5))
    remembering.save(tmp_path / "v0002", remembering.describe("v0002", parent="v0001", round_id=2))
    loaded = ResponseModel.load(tmp_path / "v0002")
    queries = [QUERY, "refund please", *REMEMBERED]
    assert np.allclose(loaded.cosines(queries), remembering.cosines(queries), atol=1e-6)
    assert loaded.memory.rule.weight == 0.4 and loaded.memory.rule.threshold == 0.5
    assert loaded.memory.turn_ids == [["turn-0"], ["turn-1"]]
    described = json.loads((tmp_path / "v0002" / "version.json").read_text())
    assert described["memory"]["examples"] == 2 and described["memory"]["weight"] == 0.4
    assert described["memory"]["threshold"] == 0.5
    saved = (tmp_path / "v0002" / MEMORY_FILE).read_bytes()
    assert all(q.encode() not in saved for q in REMEMBERED)  # embeddings, ids and turn ids only


def test_a_version_saved_before_the_threshold_existed_scores_with_the_default(tmp_path, pretrained):
    remembering = pretrained.remember([Remembered(QUERY, _runner_up(pretrained, QUERY), ("t",), 1)],
                                      MemoryRule(0.3, 0.5))
    remembering.save(tmp_path / "v0002", remembering.describe("v0002"))
    described_path = tmp_path / "v0002" / "version.json"
    described = json.loads(described_path.read_text())
    del described["memory"]["threshold"]
    described_path.write_text(json.dumps(described))
    assert ResponseModel.load(tmp_path / "v0002").memory.rule.threshold == DEFAULT_THRESHOLD


def test_a_prototype_moves_a_taught_answer_towards_the_mean_of_its_questions_and_no_other(pretrained):
    target = _runner_up(pretrained, QUERY)
    examples = [Remembered(q, target, (f"t{i}",), 1) for i, q in enumerate(REMEMBERED)]
    share = 0.4
    prototyped = pretrained.remember(examples, MemoryRule(0.0, DEFAULT_THRESHOLD, centroid=share))
    position = pretrained.bank.index_of(target)
    answer = pretrained.answer_embeddings[position]
    mean = pretrained.encode(REMEMBERED).sum(dim=0)
    prototype = (1 - share) * answer + share * mean / mean.norm()
    expected = float(pretrained.encode([QUERY])[0] @ prototype / prototype.norm())
    plain, scores = pretrained.cosines([QUERY])[0], prototyped.cosines([QUERY])[0]
    assert scores[position] == pytest.approx(expected, abs=1e-5) and scores[position] > plain[position]
    others = np.arange(len(plain)) != position
    assert np.allclose(scores[others], plain[others], atol=1e-6)  # answers with nothing remembered: their texts
    served = prototyped.answer(QUERY)
    assert served.answer.id == target  # customers' wordings pull the runner-up ahead
    # ... but it is served with its text's cosine: model.min_score keeps catching what it caught
    assert served.score == pytest.approx(plain[position], abs=1e-5) == served.top_k[0].cosine
    assert (prototyped.cosines(REMEMBERED) <= 1 + 1e-6).all()  # a prototype is a unit vector: still a cosine


def test_the_prototype_and_the_near_duplicate_bonus_add_up_and_a_saved_version_keeps_its_centroid(tmp_path, pretrained):
    target = _runner_up(pretrained, QUERY)
    examples = [Remembered(q, target, (f"t{i}",), 1) for i, q in enumerate(REMEMBERED)]
    prototype_only = pretrained.remember(examples, MemoryRule(0.0, 0.0, centroid=0.3))
    both = pretrained.remember(examples, MemoryRule(0.5, 0.0, centroid=0.3))
    nearest = float((pretrained.encode([QUERY]) @ pretrained.encode(REMEMBERED).T).max())
    position = pretrained.bank.index_of(target)
    assert both.cosines([QUERY])[0][position] == pytest.approx(
        prototype_only.cosines([QUERY])[0][position] + 0.5 * nearest, abs=1e-5)
    both.save(tmp_path / "v0002", both.describe("v0002"))
    loaded = ResponseModel.load(tmp_path / "v0002")
    assert loaded.memory.rule.centroid == 0.3
    assert np.allclose(loaded.cosines([QUERY, *REMEMBERED]), both.cosines([QUERY, *REMEMBERED]), atol=1e-6)
    described_path = tmp_path / "v0002" / "version.json"
    described = json.loads(described_path.read_text())
    del described["memory"]["centroid"]  # a version saved before prototypes
    described_path.write_text(json.dumps(described))
    older = ResponseModel.load(tmp_path / "v0002")
    assert older.memory.rule.centroid == 0.0
    without_prototypes = pretrained.remember(examples, MemoryRule(0.5, 0.0))
    assert np.allclose(older.cosines([QUERY]), without_prototypes.cosines([QUERY]), atol=1e-6)


def _prototype_cosine(model: ResponseModel, query: str, answer_id: str, questions: list[str], share: float) -> float:
    """The formula of models/memory.py, computed here from the encoder's own embeddings."""
    answer = model.answer_embeddings[model.bank.index_of(answer_id)]
    total = model.encode(questions).sum(dim=0)
    prototype = (1 - share) * answer + share * total / total.norm()
    return float(model.encode([query])[0] @ prototype / prototype.norm())


def test_with_a_prior_an_answer_taught_by_few_customers_moves_less_than_one_taught_by_many(tmp_path, pretrained):
    ranked = [choice.key for choice in pretrained.answer(QUERY).top_k]
    taught = {ranked[1]: REMEMBERED[:1], ranked[2]: [*REMEMBERED, "please post my parcel to my address"]}
    examples = [Remembered(q, answer_id, (f"t-{answer_id}-{i}",), 1)
                for answer_id, questions in taught.items() for i, q in enumerate(questions)]
    centroid, prior = 0.6, 3.0
    shrunk = pretrained.remember(examples, MemoryRule(0.0, DEFAULT_THRESHOLD, centroid, prior))
    whole = pretrained.remember(examples, MemoryRule(0.0, DEFAULT_THRESHOLD, centroid))
    for answer_id, questions in taught.items():
        position, n = pretrained.bank.index_of(answer_id), len(questions)
        assert shrunk.cosines([QUERY])[0][position] == pytest.approx(
            _prototype_cosine(pretrained, QUERY, answer_id, questions, centroid * n / (n + prior)), abs=1e-5)
        assert whole.cosines([QUERY])[0][position] == pytest.approx(
            _prototype_cosine(pretrained, QUERY, answer_id, questions, centroid), abs=1e-5)
    shrunk.save(tmp_path / "v0002", shrunk.describe("v0002"))
    assert ResponseModel.load(tmp_path / "v0002").memory.rule.centroid_prior == prior
    described_path = tmp_path / "v0002" / "version.json"
    described = json.loads(described_path.read_text())
    del described["memory"]["centroid_prior"]  # a version saved before the prior: every answer moves the whole share
    described_path.write_text(json.dumps(described))
    assert np.allclose(ResponseModel.load(tmp_path / "v0002").cosines([QUERY]), whole.cosines([QUERY]), atol=1e-6)


@pytest.mark.parametrize("damage", [
    lambda path: path.write_bytes(b"garbage"),
    lambda path: path.unlink(),
    lambda path: torch.save({"embeddings": torch.zeros(1, 384), "answer_ids": ["a"], "turn_ids": [["t"]]}, path),
])
def test_a_damaged_memory_is_refused(tmp_path, pretrained, damage):
    remembering = pretrained.remember([Remembered(QUERY, _runner_up(pretrained, QUERY), ("t",), 1)], MemoryRule(0.3))
    remembering.save(tmp_path / "v0002", remembering.describe("v0002"))
    damage(tmp_path / "v0002" / MEMORY_FILE)
    with pytest.raises(ModelLoadError, match="memory.pt"):
        ResponseModel.load(tmp_path / "v0002")


def _example(round_id: int, prompt: str | None, key: str, reward: float = 0.5,
             turn_ids: tuple[str, ...] = ("t",)) -> TrainingExample:
    return TrainingExample(round_id=round_id, prompt_id=0, prompt=prompt, candidate_key=key, candidate_text=key,
                           answer_id=key, topic="x", turn_ids=list(turn_ids), sampled_by="v0001", rule="statistical",
                           q=0.5, similarity=0.5, rating_up=None, rating_down=None, rating=None, reward=reward,
                           accept_probability=1.0)


def test_a_round_remembers_one_example_per_question_the_newest_judgement_first():
    accepted = [_example(1, "where is my parcel", "old-answer", reward=0.9),
                _example(3, "where is my parcel", "weak", reward=0.2),
                _example(3, "where is my parcel", "new-answer", reward=0.8),  # newest round, then highest reward
                _example(2, "refund please", "refund"),
                _example(2, None, "gone"),  # a prompt forgotten from the log
                _example(1, "a question whose turns were forgotten", "x", turn_ids=()),
                _example(1, "oldest", "y")]
    remembered = remembered_examples(accepted, limit=10)
    assert [(r.question, r.answer_id, r.round_id) for r in remembered] == [
        ("where is my parcel", "new-answer", 3), ("refund please", "refund", 2), ("oldest", "y", 1)]
    assert [r.question for r in remembered_examples(accepted, limit=2)] == ["where is my parcel", "refund please"]


def test_a_written_reply_is_never_remembered_nor_displaces_the_bank_answer_of_its_question():
    """A generative round accepts written replies (keyed by their text's hash, grounded in a bank answer) beside the
    retriever's own bank answers; only the latter are (question, answer) pairs a memory can hold."""
    written = replace(_example(4, "where is my parcel", "gen-00000000000000ab", reward=0.95), answer_id="track")
    accepted = [written, _example(4, "where is my parcel", "track", reward=0.6),
                replace(_example(4, "only written", "gen-00000000000000cd"), answer_id="refund")]
    assert [(r.question, r.answer_id) for r in remembered_examples(accepted, limit=10)] == [
        ("where is my parcel", "track")]

class _RoundsOnly:
    """The two reads `read_remembered` makes, over fixed rows, counting the rounds it reads."""

    def __init__(self, accepted: list[TrainingExample]) -> None:
        self.accepted, self.rounds_read = accepted, []

    def rounds(self, limit: int = 50) -> list:
        ids = sorted({e.round_id for e in self.accepted}, reverse=True)[:limit]
        return [SimpleNamespace(id=round_id) for round_id in ids]

    def training_examples(self, round_id: int | None = None) -> list[TrainingExample]:
        self.rounds_read.append(round_id)
        return [e for e in self.accepted if e.round_id == round_id]


def test_reading_the_memory_stops_at_the_round_that_fills_it_and_remembers_the_same():
    accepted = [_example(r, f"question {r}.{i}", f"a{i}") for r in range(1, 6) for i in range(3)]
    accepted += [_example(5, "question 1.0", "newer"), _example(4, None, "gone")]
    # Questions held after reading rounds 5, 4, 3, 2, 1: 4, 7, 10, 13, 15 ("question 1.0" was judged again in 5).
    for limit, rounds_read in ((1, [5]), (4, [5]), (5, [5, 4]), (7, [5, 4]), (11, [5, 4, 3, 2]),
                              (100, [5, 4, 3, 2, 1])):
        log = _RoundsOnly(accepted)
        assert read_remembered(log, limit) == remembered_examples(accepted, limit)
        assert log.rounds_read == rounds_read
