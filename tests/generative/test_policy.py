"""The generative kind behind the ResponsePolicy interface, on the real writer and MiniLM at test sizes."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from rsft_plugin.config import FinetuneConfig, ModelConfig
from rsft_plugin.generative.policy import GeneratedCandidate, GenerativePolicy, WrittenAnswer, reply_key
from rsft_plugin.generative.settings import LoraTraining
from rsft_plugin.generative.writer import Writer
from rsft_plugin.models import ResponsePolicy, TrainingPair, load_version, policy_class
from rsft_plugin.models.registry import Registry

pytestmark = pytest.mark.writer

QUESTION = "Can I return shoes after 3 weeks?"


@pytest.fixture(scope="module")
def policy(pretrained, writer) -> GenerativePolicy:
    """The session's retriever and writer (16 new tokens, one grounding answer) as a generative policy."""
    small = Writer(writer.model, writer.tokenizer, replace(writer.settings, grounding_answers=1), writer.base)
    return GenerativePolicy(pretrained, small, ModelConfig(kind="generative"),
                            training=LoraTraining(learning_rate=5e-3, batch_size=4, max_epochs=1))


def test_the_kind_is_registered_and_implements_the_interface(policy) -> None:
    assert policy_class("generative") is GenerativePolicy
    assert isinstance(policy, ResponsePolicy)


def test_answer_writes_a_grounded_reply_with_a_topic(policy, bank) -> None:
    answered = policy.answer(QUESTION)
    assert isinstance(answered, WrittenAnswer)
    assert answered.grounding_ids and answered.answer.id == answered.grounding_ids[0]
    assert answered.topic in bank.topics and answered.text
    if answered.fallback:
        assert answered.key == answered.answer.id and answered.text == answered.answer.text
    else:
        assert answered.key == reply_key(answered.text) and answered.new_tokens <= 16


def test_a_timeout_answers_with_the_grounding_answer(policy) -> None:
    slow = GenerativePolicy(policy.retriever, Writer(policy.writer.model, policy.writer.tokenizer,
                                                     replace(policy.writer.settings, time_limit_seconds=1e-4),
                                                     policy.writer.base), policy.config)
    answered = slow.answer(QUESTION)
    grounded = policy.retriever.answer(QUESTION)
    assert answered.fallback and answered.reason == "timeout"
    assert (answered.key, answered.text, answered.topic) == (grounded.key, grounded.text, grounded.topic)


def test_sample_many_draws_k_replies_with_log_q(policy) -> None:
    [candidates] = policy.sample_many([QUESTION], k=2, rng=np.random.default_rng(0))
    assert len(candidates) == 2 + policy.config.generative.retriever_draws  # then the retriever's own (below)
    for c in candidates[:2]:
        assert isinstance(c, GeneratedCandidate)
        assert c.key == reply_key(c.text) and c.probability == pytest.approx(math.exp(c.logprob))
        assert c.answer_id == c.grounding_ids[0] and c.logprob < 0
        assert c.faithful == (not c.violations)


def test_finetune_trains_a_copy_and_a_version_round_trips(tmp_path, policy, bank) -> None:
    [candidates] = policy.sample_many([QUESTION], k=2, rng=np.random.default_rng(1))
    pairs = [TrainingPair(QUESTION, candidates[0].key, (candidates[1].key,)),
             TrainingPair("How do I start a return?", "start_return")]  # a bank answer id trains its text
    result = policy.finetune(pairs, FinetuneConfig(val_fraction=0.0), show_bar=False)
    trained = result.model
    assert isinstance(trained, GenerativePolicy) and trained is not policy
    assert hasattr(trained.writer.model, "peft_config") and not hasattr(policy.writer.model, "peft_config")
    assert result.train_pairs == 2 and result.epochs_run == 1

    registry = Registry(tmp_path / "models")
    info = registry.publish(trained, notes="test")
    assert info.kind == "generative" and info.base_encoder["writer_base_sha256"] == policy.writer.base.sha256
    folder = registry.version_path(info.name)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size < 30_000_000, "the writer's base is referenced by hash, not copied"
    loaded = load_version(folder, ModelConfig(kind="generative"))
    assert isinstance(loaded, GenerativePolicy) and loaded.name == info.name
    reply = "Only unused items can be returned."
    assert loaded.writer.reply_logprobs(QUESTION, ["x"], [reply]) == pytest.approx(
        trained.writer.reply_logprobs(QUESTION, ["x"], [reply]), abs=1e-4)

    # the retriever learnt too (the curated bank answer), the judge did not
    probe = ["How do I start a return?", QUESTION]
    assert trained.retriever is not policy.retriever and trained.judge is policy.judge
    assert not np.allclose(trained.retriever.cosines(probe), policy.retriever.cosines(probe))
    assert np.allclose(loaded.retriever.cosines(probe), trained.retriever.cosines(probe), atol=1e-5)
    assert np.allclose(loaded.judge.cosines(probe), policy.judge.cosines(probe), atol=1e-5)  # loaded: pretrained
    # every loaded version's judge encodes with the process's one pretrained encoder, not a ~90 MB copy of its own
    assert load_version(folder, ModelConfig(kind="generative")).judge.encoder is loaded.judge.encoder
    assert loaded.judge.encoder is not loaded.retriever.encoder


class _Writes:
    """A writer stand-in for sampling: reply i to a grounding is "<its first words> (i)" with log q -1.5."""

    def __init__(self, settings) -> None:
        self.settings, self.base = settings, None

    def sample(self, question, grounding, k, seed=0, **_kwargs):
        from rsft_plugin.generative.writer import SampledReply

        return [SampledReply(f"{' '.join(grounding[0].split()[:6])} ({i})", (1, 2), -1.5, -2.0, True)
                for i in range(k)]

    def sample_many(self, requests, **_kwargs):
        return [self.sample(question, grounding, k, seed) for question, grounding, k, seed in requests]


@pytest.mark.parametrize("tune", [True, False])
def test_each_sampled_reply_is_grounded_in_an_answer_drawn_from_the_retriever_and_log_q_is_the_joint(
        policy, tune) -> None:
    from rsft_plugin.config.generative import GenerativeConfig

    config = replace(ModelConfig(kind="generative"),
                     generative=GenerativeConfig(tune_retriever=tune, retriever_draws=0))
    sampler = GenerativePolicy(policy.retriever, _Writes(policy.writer.settings), config)
    temperature = 0.5  # warm enough that 16 draws reach several answers
    [candidates] = sampler.sample_many([QUESTION], k=16, temperature=temperature, rng=np.random.default_rng(2))
    assert len(candidates) == 16
    q_r = policy.retriever.policy(QUESTION, temperature)
    index = {a.id: i for i, a in enumerate(policy.bank.answers)}
    top = policy.retriever.answer(QUESTION).key
    groundings = {c.grounding_ids for c in candidates}
    for c in candidates:
        assert c.answer_id == c.grounding_ids[0] and len(c.grounding_ids) == 1
        expected = math.log(q_r[index[c.answer_id]]) - 1.5 if tune else -1.5
        assert c.logprob == pytest.approx(expected) and c.probability == pytest.approx(math.exp(expected))
    assert (len(groundings) > 1) if tune else (groundings == {(top,)})

    # without draws of its own, the retriever learns from groundings: an accepted reply's is the target, rejected
    # replies' others the negatives
    accepted, rejected = candidates[0], [c for c in candidates if c.answer_id != candidates[0].answer_id]
    pairs = [TrainingPair(QUESTION, accepted.key, tuple(c.key for c in rejected)),
             TrainingPair(QUESTION, candidates[1].key),  # the same grounding again or another: one pair per answer
             TrainingPair("How do I start a return?", "start_return")]
    grounding_pairs = sampler._grounding_pairs(pairs)
    targets = [(p.prompt, p.target_key) for p in grounding_pairs]
    assert len(targets) == len(set(targets)) and targets[0] == (QUESTION, accepted.answer_id)
    assert ("How do I start a return?", "start_return") in targets
    assert set(grounding_pairs[0].negative_keys) == {c.answer_id for c in rejected} - {candidates[1].answer_id}


def test_the_retriever_draws_bank_answers_of_its_own_which_train_it_and_not_the_writer(policy) -> None:
    """`retriever_draws`: the written replies are grounded in the top answer, as served (q = q_w), then come the
    retriever's own candidates as its kind samples them; an accepted one is the retriever's target (a written
    reply's grounding is not), and never a writer example."""
    from rsft_plugin.config.generative import GenerativeConfig
    from rsft_plugin.generative.answers import writer_pairs

    config = replace(ModelConfig(kind="generative"), generative=GenerativeConfig(retriever_draws=3))
    sampler = GenerativePolicy(policy.retriever, _Writes(policy.writer.settings), config)
    [candidates] = sampler.sample_many([QUESTION], k=4, temperature=0.5, rng=np.random.default_rng(3))
    written, retrieved = candidates[:4], candidates[4:]
    assert len(retrieved) == 3 and all(c.key == c.answer_id for c in retrieved)
    assert len({c.key for c in retrieved}) == 3, "distinct, as the retrieval kind samples without replacement"
    assert all(isinstance(c, GeneratedCandidate) and c.key != c.answer_id for c in written)
    top = policy.retriever.answer(QUESTION).key
    assert {c.grounding_ids for c in written} == {(top,)} and all(c.logprob == -1.5 for c in written)
    q_r = policy.retriever.policy(QUESTION, 0.5)
    index = {a.id: i for i, a in enumerate(policy.bank.answers)}
    assert all(c.probability == pytest.approx(q_r[index[c.key]]) for c in retrieved)

    chosen, passed_over = retrieved[1], [retrieved[0].key, retrieved[2].key]
    pairs = [TrainingPair(QUESTION, written[0].key, (written[1].key, *passed_over)),
             TrainingPair(QUESTION, chosen.key, (written[1].key, *passed_over)),
             TrainingPair("How do I start a return?", "start_return")]  # curated: not drawn, trains both
    targets = {(p.prompt, p.target_key): p.negative_keys for p in sampler._grounding_pairs(pairs)}
    assert set(targets) == {(QUESTION, chosen.key), ("How do I start a return?", "start_return")}
    assert set(targets[(QUESTION, chosen.key)]) == set(passed_over)
    assert [p.target_key for p in writer_pairs(pairs, sampler._retrieved)] == [written[0].key, "start_return"]


def test_evaluate_writing_measures_what_the_gate_compares(policy, bank) -> None:
    from rsft_plugin.golden import GoldenQuestion

    questions = [GoldenQuestion(QUESTION, "return_policy", "test"),
                 GoldenQuestion("How much does express shipping cost?", "shipping_costs", "test")]
    quality = policy.evaluate_writing(questions)
    assert quality.n == 2
    assert 0 <= quality.topic_correct <= 1 and 0 <= quality.similarity <= 1
    assert 0 <= quality.violations <= 1 and 0 <= quality.fallbacks <= 1


class _WritesAnotherAnswer:
    """A writer stand-in whose every reply is `text` (what a drifting writer might produce)."""

    def __init__(self, settings, text: str) -> None:
        self.settings, self.text, self.base = settings, text, None

    def write(self, question, grounding, **_kwargs):
        from rsft_plugin.generative.writer import Reply

        return Reply(self.text, False, "", 40, 12, 0.1, self.text)

    def write_many(self, requests, **_kwargs):
        return [self.write(question, grounding) for question, grounding in requests]


@pytest.mark.parametrize("guard", [True, False])
def test_a_reply_off_its_groundings_topic_serves_the_grounding_answer_and_the_gate_judges_what_was_written(
        policy, bank, guard) -> None:
    from rsft_plugin.golden import GoldenQuestion

    shipping = next(a for a in bank.answers if a.topic == "shipping_costs")
    drifting = GenerativePolicy(policy.retriever, _WritesAnotherAnswer(
        replace(policy.writer.settings, guard_topic=guard), shipping.text), policy.config)
    grounded = policy.retriever.answer(QUESTION)
    assert grounded.topic == "return_policy"
    answered = drifting.answer(QUESTION)
    assert answered.written == shipping.text
    if guard:
        assert answered.fallback and answered.reason == "off_topic"
        assert (answered.key, answered.text, answered.topic) == (grounded.key, grounded.text, "return_policy")
    else:
        assert not answered.fallback and answered.text == shipping.text and answered.topic == "shipping_costs"
    [outcome] = drifting.writing_outcomes([GoldenQuestion(QUESTION, "return_policy", "test")])
    assert not outcome.topic_right  # what was written is the shipping answer, whatever was served
    assert outcome.served[0] is guard  # the customer got the returns answer only with the guard
    quality = drifting.evaluate_writing([GoldenQuestion(QUESTION, "return_policy", "test")])
    assert quality.topic_correct == 0.0 and quality.served_topic_correct == float(guard)


def test_a_generative_version_remembers_through_its_retriever_and_keeps_it_when_saved(tmp_path, policy) -> None:
    """The example memory (models/memory.py) is the retriever's: a remembered question grounds the writer in its
    remembered answer, as the retrieval kind would answer it; the round's proposal samples without it."""
    from rsft_plugin.models.base import RemembersExamples
    from rsft_plugin.models.memory import MemoryRule, Remembered

    top, runner_up = [r.answer_id for r in policy.retriever.answer(QUESTION).top_k[:2]]
    remembering = policy.remember([Remembered(QUESTION, runner_up, ("t",), 1)], MemoryRule(0.5, 0.6))
    assert isinstance(policy, RemembersExamples) and remembering is not policy
    assert remembering.retriever.answer(QUESTION).key == runner_up
    assert remembering.without_memory().retriever.answer(QUESTION).key == top
    assert policy.retriever.answer(QUESTION).key == top, "the remembering copy leaves this version as it was"

    info = Registry(tmp_path / "models").publish(remembering, notes="test")
    loaded = load_version(tmp_path / "models" / info.name, ModelConfig(kind="generative"))
    assert loaded.retriever.answer(QUESTION).key == runner_up
