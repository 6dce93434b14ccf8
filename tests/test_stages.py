"""collect, sample, score, fine-tune and gate on small real data: real SQLite, the real MiniLM."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from rsft_plugin.config import CollectConfig, FeedbackConfig, FinetuneConfig, GateConfig, SampleConfig, ScoreConfig
from rsft_plugin.golden import GoldenQuestion
from rsft_plugin.log import Signal, SqliteLog, Turn, TurnRecord, open_sqlite
from rsft_plugin.models.encoder import embed, trainable_state
from rsft_plugin.models.retrieval import ResponseModel
from rsft_plugin.stages.collect import collect_prompts
from rsft_plugin.stages.evidence import CHOICE, IMPLICIT, Evidence, grounding_evidence, signal_evidence
from rsft_plugin.stages.finetune import finetune
from rsft_plugin.stages.gate import gate
from rsft_plugin.stages.noise import RATING
from rsft_plugin.stages.records import Prompt, PromptSet, RoundStopped, SampledCandidate, TrainingPair
from rsft_plugin.stages.sample import named_answers, sample_candidates
from rsft_plugin.stages.score import capped_votes, score_candidates, smoothed_rating

from .conftest import REPO


@pytest.fixture
def store(tmp_path):
    opened = open_sqlite(tmp_path / "rsft.db")
    yield opened
    opened.close()


@pytest.fixture
def embed_fixed(pretrained):
    return lambda texts: embed(pretrained.encoder, texts)


def _log(store: SqliteLog, sender: str, text: str, answer_id: str, rating: int | None = None) -> str:
    turn_id = store.log_turn(TurnRecord(sender, None, text, answer_id, answer_id, "...", "v0001", 0.5, 0.2, [], 5.0))
    if rating is not None:
        store.rate(turn_id, sender, rating)
    return turn_id


# ---- collect ---------------------------------------------------------------------------------------------------

def test_collect_merges_near_duplicates_and_remembers_every_turn(store, embed_fixed):
    a = _log(store, "s1", "Where is my parcel?", "track_order")
    b = _log(store, "s2", "where is my parcel", "track_order")
    c = _log(store, "s3", "How do I delete my account?", "delete_account")
    config = CollectConfig(min_prompts=1, gate_fraction=0)
    prompts = collect_prompts(store, embed_fixed, config, 0)
    merged = {frozenset(p.turn_ids) for p in prompts.prompts}
    assert merged == {frozenset({a, b}), frozenset({c})}
    assert prompts.embeddings.shape == (2, 384)


def test_collect_stops_when_there_are_too_few_prompts(store, embed_fixed):
    _log(store, "s1", "hello there, where is my order", "track_order")
    with pytest.raises(RoundStopped, match="only 1 distinct new prompts"):
        collect_prompts(store, embed_fixed, CollectConfig(min_prompts=5), 0)


def test_collect_keeps_only_rated_prompts_for_the_gate_and_stably(store, embed_fixed):
    questions = [f"question number {n} about refund {n * 7919}" for n in range(60)]
    for n, text in enumerate(questions):
        _log(store, f"s{n}", text, "refund_status", rating=1 if n % 2 else None)
    config = CollectConfig(min_prompts=1, gate_fraction=0.5, merge_cosine=0.999)
    first = collect_prompts(store, embed_fixed, config, 0)
    second = collect_prompts(store, embed_fixed, config, 0)
    gate_ids = first.gate_turn_ids
    assert gate_ids and gate_ids == second.gate_turn_ids
    rated = {t["id"] for t in store.rated_turns()}
    assert gate_ids <= rated
    assert not {t for p in first.trainable for t in p.turn_ids} & gate_ids


# ---- sample ----------------------------------------------------------------------------------------------------

def test_sample_draws_k_distinct_candidates_per_prompt_with_their_q(pretrained):
    prompts = [Prompt(0, "I want my money back", ("t0",), False, False),
               Prompt(1, "can I change the size of my order", ("t1",), False, False)]
    candidates = sample_candidates(pretrained, prompts, SampleConfig(k=5, temperature=0.1))
    assert len(candidates) == 10
    for prompt in prompts:
        mine = [c for c in candidates if c.prompt_id == prompt.id]
        assert len({c.answer_id for c in mine}) == 5 and [c.draw for c in mine] == list(range(5))
        policy = pretrained.policy(prompt.text, 0.1)
        for c in mine:
            assert c.q == pytest.approx(policy[pretrained.bank.index_of(c.answer_id)], rel=1e-4)  # batch padding
            assert c.sampled_by == pretrained.name



def test_sample_adds_the_answers_customers_named_that_its_draws_missed(pretrained):
    """sample.named: a prompt's named answers the k draws did not hold join its candidates after the draws, with
    their q under the same policy; one the draws hold is not added twice, one the bank lacks is left out."""
    prompts = [Prompt(0, "I want my money back", ("t0",), False, False),
               Prompt(1, "can I change the size of my order", ("t1",), False, False)]
    policy = pretrained.policy(prompts[0].text, 0.1)
    last = pretrained.bank.answers[int(np.argmin(policy))].id  # q ~ 1e-9 at this temperature: never drawn
    config = SampleConfig(k=2, temperature=0.1)
    plain = sample_candidates(pretrained, prompts, config)  # the draws are seeded by the prompt's text
    drawn = plain[0].key
    candidates = sample_candidates(pretrained, prompts, config, named={0: [drawn, last, "no_such_answer", last]})
    assert [c for c in candidates if not c.named] == plain, "the draws themselves do not change"
    first = [c for c in candidates if c.prompt_id == 0]
    assert [(c.key, c.draw, c.named) for c in first[2:]] == [(last, 2, True)]
    assert first[2].q == pytest.approx(policy[pretrained.bank.index_of(last)], rel=1e-4)
    assert first[2].sampled_by == pretrained.name and first[2].text == pretrained.bank.get(last).text
    assert len([c for c in candidates if c.prompt_id == 1]) == 2, "a prompt nobody named anything for: its draws"


def test_the_named_answers_of_a_prompt_are_the_explicit_positive_votes_on_its_own_turns():
    def vote(turn: str, key: str, positive: bool = True, kind: str = RATING, weight: float = 1.0) -> Evidence:
        return Evidence("q", "s", key, positive, weight, kind, turn)

    evidence = [vote("t0", "thumbs_up"), vote("t0", "thumbs_down", positive=False), vote("t1", "picked", kind=CHOICE),
                vote("t0", "thanked", kind=IMPLICIT), vote("t0", "none_of_these", positive=False, kind=CHOICE),
                vote("t0", "weight_zero", kind=CHOICE, weight=0.0), vote("t9", "another_question", kind=CHOICE),
                vote("t1", "thumbs_up")]
    prompts = [Prompt(0, "q", ("t0", "t1"), False, False), Prompt(1, "r", ("t5",), False, False)]
    assert named_answers(prompts, evidence) == {0: ["thumbs_up", "picked"]}
    assert named_answers(prompts, evidence, ratings=False) == {0: ["picked"]}, "sample.named_ratings off: picks only"


# ---- score -----------------------------------------------------------------------------------------------------

def test_smoothing_and_sender_caps():
    assert smoothed_rating(0, 0) == 0.5
    assert smoothed_rating(1, 0) == pytest.approx(2 / 3)  # one vote is evidence, not certainty
    assert smoothed_rating(9, 1) == pytest.approx(10 / 12)
    assert capped_votes([("mallory", 1)] * 50 + [("ann", 0)], 1.0) == (1.0, 1.0)
    assert capped_votes([("a", 1), ("a", 0), ("b", 1)], 1.0) == (1.5, 0.5)


def _rated(turn_id: str, sender: str, text: str, answer_id: str, rating: int) -> Turn:
    return Turn(id=turn_id, sender_id=sender, user_text=text, answer_id=answer_id, answer_topic=answer_id,
                created_at="2026-11-30T00:00:00", rating=rating)


def test_rewards_come_from_neighbour_ratings_and_similarity_to_trusted_answers(bank, embed_fixed):
    prompt_text = "how long does a refund take to reach my card"
    prompt_set = PromptSet([Prompt(0, prompt_text, ("t",), False, False)], embed_fixed([prompt_text]))
    rated = [  # a near-identical question rated 👍 on refund_status, and 👎 on shipping_costs
        _rated("r1", "ann", "how long does a refund take to reach my card?", "refund_status", 1),
        _rated("r2", "bob", "How long does a refund take to reach my card", "shipping_costs", 0),
        _rated("r3", "cy", "do you sell garden furniture", "back_in_stock", 1),  # unrelated: must not count
    ]
    candidates = [SampledCandidate(0, i, a, bank.get(a).text, a, a, 0.1, 0.5, "v0001")
                  for i, a in enumerate(["refund_status", "shipping_costs", "back_in_stock"])]
    scored = {s.candidate.answer_id: s for s in score_candidates(candidates, prompt_set, rated, [], bank,
                                                                 embed_fixed, ScoreConfig())}
    assert scored["refund_status"].similarity == 1.0
    assert scored["refund_status"].rating == pytest.approx(2 / 3)
    assert scored["shipping_costs"].rating == pytest.approx(1 / 3)
    assert scored["back_in_stock"].rating == 0.5 and scored["back_in_stock"].rating_up == 0
    assert 0 <= scored["back_in_stock"].similarity < 1
    assert scored["refund_status"].reward > scored["back_in_stock"].reward > scored["shipping_costs"].reward - 1
    assert scored["refund_status"].reward == pytest.approx(1.0 + 2 / 3)


def test_a_written_reply_rated_up_is_a_trusted_reference_for_the_replies_sampled_later(bank, embed_fixed):
    """With the generative kind live, customers rate written replies (keys "gen-…"): one with a 👍 is trusted by its
    logged text, so a later sampled reply like it scores as similar; without the text nothing would be trusted."""
    prompt_text = "how long does a refund take to reach my card"
    prompt_set = PromptSet([Prompt(0, prompt_text, ("t",), False, False)], embed_fixed([prompt_text]))
    served = "Refunds reach your card within 5 to 10 business days after we receive the return."
    rated = Turn(id="r1", sender_id="ann", user_text="How long does a refund take to reach my card?",
                 answer_id="refund_status", answer_topic="refund_status", created_at="2026-11-30T00:00:00", rating=1,
                 reply_key="gen-00000000000000aa", answer_text=served)
    alike = "Your refund reaches your card within 5 to 10 business days once the return arrives."
    other = bank.get("shipping_costs").text
    candidates = [SampledCandidate(0, i, f"gen-{i:016x}", text, "refund_status", "refund_status", 0.1, 0.5, "v0001")
                  for i, text in enumerate([alike, other])]
    scored = score_candidates(candidates, prompt_set, [rated], [], bank, embed_fixed, ScoreConfig())
    assert scored[0].similarity > 0.8 and scored[0].similarity > scored[1].similarity
    untold = score_candidates(candidates, prompt_set, [replace(rated, answer_text=None)], [], bank, embed_fixed,
                              ScoreConfig())
    assert [s.similarity for s in untold] == [0.0, 0.0]

@pytest.mark.parametrize("noise_model", ["none", "em"])
def test_a_rating_of_a_written_reply_also_rates_the_bank_answer_it_was_written_from(bank, embed_fixed, noise_model):
    """The retriever learns from bank answers: a 👍 on a reply written from refund_status makes refund_status trusted
    (and raises it), a 👎 on one written from shipping_costs lowers that; weight 0, a bank answer served as itself
    (retrieval, or a writer's fallback) and a turn without an answer add nothing."""
    prompt_text = "how long does a refund take to reach my card"
    prompt_set = PromptSet([Prompt(0, prompt_text, ("t",), False, False)], embed_fixed([prompt_text]))
    question = "How long does a refund take to reach my card?"
    written_up = Turn(id="w1", sender_id="ann", user_text=question, answer_id="refund_status",
                      answer_topic="refund_status", created_at="2026-11-30T00:00:00", rating=1,
                      reply_key="gen-00000000000000aa", answer_text="Refunds reach your card in 5 to 10 days.")
    written_down = replace(written_up, id="w2", sender_id="bob", answer_id="shipping_costs", rating=0,
                           reply_key="gen-00000000000000bb", answer_text="Shipping is free over 50 euros.")
    served_as_itself = replace(written_up, id="w3", sender_id="cy", answer_id="back_in_stock",
                               reply_key="back_in_stock")
    unanswered = replace(written_up, id="w4", sender_id="dee", answer_id=None, reply_key="not_understood")
    rated = [written_up, written_down, served_as_itself, unanswered]
    votes = grounding_evidence(rated, 1.0)
    assert [(v.key, v.positive, v.turn_id) for v in votes] == [("refund_status", True, "w1"),
                                                                ("shipping_costs", False, "w2")]
    assert grounding_evidence(rated, 0.0) == []
    keys = ["refund_status", "shipping_costs"]
    candidates = [SampledCandidate(0, i, a, bank.get(a).text, a, a, 0.5, 0.5, "v0001") for i, a in enumerate(keys)]
    config = ScoreConfig(noise_model=noise_model)

    def scored(evidence):
        return {s.candidate.answer_id: s for s in score_candidates(candidates, prompt_set, [written_up, written_down],
                                                                   [], bank, embed_fixed, config, evidence)}

    told, untold = scored(votes), scored([])
    assert told["refund_status"].similarity == 1.0 and untold["refund_status"].similarity < 1.0
    assert told["refund_status"].rating > untold["refund_status"].rating
    assert told["shipping_costs"].rating < untold["shipping_costs"].rating
    # an implicit signal about a written reply reaches its grounding answer too (never as a reference)
    thanks = replace(_signal("thanks", "gen-00000000000000cc", sender="eve"), served_key="gen-00000000000000cc",
                     served_answer_id="refund_status")
    thanked = scored(signal_evidence([thanks], FeedbackConfig(), offered=lambda s: []))
    assert thanked["refund_status"].rating > untold["refund_status"].rating
    assert thanked["refund_status"].similarity == untold["refund_status"].similarity
    off = scored(signal_evidence([thanks], FeedbackConfig(grounding_weight=0), offered=lambda s: []))
    assert off["refund_status"].rating == pytest.approx(untold["refund_status"].rating, abs=1e-6)


def test_curated_questions_make_their_topic_trusted(bank, embed_fixed):
    text = "can i pay with paypal"
    prompt_set = PromptSet([Prompt(0, text, ("t",), False, False)], embed_fixed([text]))
    candidates = [SampledCandidate(0, 0, "payment_methods", bank.get("payment_methods").text, "payment_methods",
                                   "payment_methods", 0.3, 0.5, "v0001")]
    curated = [GoldenQuestion("Can I pay with PayPal?", "payment_methods", "train")]
    without = score_candidates(candidates, prompt_set, [], [], bank, embed_fixed, ScoreConfig())[0]
    with_curated = score_candidates(candidates, prompt_set, [], curated, bank, embed_fixed, ScoreConfig())[0]
    assert without.similarity == 0.0 and with_curated.similarity == 1.0


def test_a_trusted_answer_is_exactly_as_similar_to_itself_as_1_whatever_float_rounding_gives(bank, embed_fixed):
    """float32 makes a unit vector's self-dot 0.99999994 in some batches; here the embeddings are made short."""
    def embed_short(texts):
        return 0.999 * embed_fixed(texts)

    text = "can i pay with paypal"
    prompt_set = PromptSet([Prompt(0, text, ("t",), False, False)], embed_short([text]))
    candidates = [SampledCandidate(0, 0, "payment_methods", bank.get("payment_methods").text, "payment_methods",
                                   "payment_methods", 0.3, 0.5, "v0001")]
    curated = [GoldenQuestion("Can I pay with PayPal?", "payment_methods", "train")]
    assert score_candidates(candidates, prompt_set, [], curated, bank, embed_short, ScoreConfig())[0].similarity == 1.0


def _signal(kind: str, key: str | None, sender: str = "dee",
            text: str = "How long does a refund take to reach my card?") -> Signal:
    return Signal(id=1, turn_id=f"turn-{sender}", sender_id=sender, kind=kind, reply_key=key,
                  created_at="2026-11-30T00:00:00", user_text=text, model_version="v0001", served_key="shipping_costs")


@pytest.mark.parametrize("noise_model", ["none", "em"])
def test_a_pick_makes_its_answer_trusted_a_thanks_only_raises_it_and_weight_zero_is_silent(bank, embed_fixed,
                                                                                           noise_model):
    prompt_text = "how long does a refund take to reach my card"
    prompt_set = PromptSet([Prompt(0, prompt_text, ("t",), False, False)], embed_fixed([prompt_text]))
    keys = ["refund_status", "shipping_costs", "back_in_stock"]
    candidates = [SampledCandidate(0, i, a, bank.get(a).text, a, a, 1 / 3, 0.5, "v0001") for i, a in enumerate(keys)]
    config = ScoreConfig(noise_model=noise_model)

    def scored(signals, feedback=None):
        evidence = signal_evidence(signals, feedback or FeedbackConfig(), offered=lambda s: ["back_in_stock"])
        return {s.candidate.answer_id: s for s in score_candidates(candidates, prompt_set, [], [], bank, embed_fixed,
                                                                   config, evidence)}

    nothing = scored([])
    picked = scored([_signal("choice", "refund_status")])
    assert picked["refund_status"].similarity == 1.0
    assert nothing["refund_status"].similarity == 0.0
    assert picked["refund_status"].rating > nothing["refund_status"].rating
    thanked = scored([_signal("thanks", "refund_status")])
    assert thanked["refund_status"].rating > nothing["refund_status"].rating
    assert thanked["refund_status"].similarity == 0.0, "an implicit 👍 never makes a reference"
    reasked = scored([_signal("reask", "shipping_costs"), _signal("none_of_these", None, sender="eve")])
    assert reasked["shipping_costs"].rating < nothing["shipping_costs"].rating
    assert reasked["back_in_stock"].rating < nothing["back_in_stock"].rating, "None of these: 👎 on what was offered"
    off = FeedbackConfig(choice_weight=0, thanks_weight=0)
    silent = scored([_signal("choice", "refund_status"), _signal("thanks", "refund_status", sender="eve")], off)
    assert {k: s.rating for k, s in silent.items()} == {k: s.rating for k, s in nothing.items()}
    far = scored([_signal("choice", "back_in_stock", text="do you sell garden furniture")])
    assert far["back_in_stock"].rating == nothing["back_in_stock"].rating, "evidence about another question"
    # the answer that settled this question once it was put in other words: a pick, when its weight is on
    settled = scored([_signal("resolved", "refund_status")], FeedbackConfig(resolved_weight=2.0))
    assert settled["refund_status"].similarity == 1.0, "explicit: it makes a reference, as a pick does"
    assert settled["refund_status"].rating > nothing["refund_status"].rating
    unweighted = scored([_signal("resolved", "refund_status")])  # resolved_weight 0 by default: off
    assert {k: s.rating for k, s in unweighted.items()} == {k: s.rating for k, s in nothing.items()}


# ---- fine-tune and gate ----------------------------------------------------------------------------------------

def _pairs(bank) -> list[TrainingPair]:
    examples = [("parcel shows delivered but nothing came", "delayed_delivery"),
                ("my box never showed up", "delayed_delivery"),
                ("when will the money for my return be back", "refund_status"),
                ("I paid but the refund is missing", "refund_status"),
                ("do you ship to Canada", "international_shipping"),
                ("delivery to Japan possible?", "international_shipping")] * 3
    negatives = ("track_order", "shipping_costs")
    return [TrainingPair(text, answer, negatives) for text, answer in examples]


def test_finetune_changes_every_trainable_parameter_and_nothing_else(pretrained, bank):
    live_state = {k: v.detach().clone() for k, v in pretrained.encoder.state_dict().items()}
    result = finetune(pretrained, _pairs(bank), FinetuneConfig(max_epochs=2, batch_size=8, val_fraction=0.0),
                      show_bar=False)
    tuned = result.model.encoder.state_dict()
    assert result.examples_per_second > 0 and result.epochs_run >= 1
    changed = {k for k in live_state if not torch.equal(live_state[k], tuned[k])}
    for name, parameter in trainable_state(result.model.encoder, 2).items():
        original = trainable_state(pretrained.encoder, 2)[name]
        assert not torch.equal(parameter, original), f"{name} did not change"
    frozen_changed = {k for k in changed if ".layer.4." not in k and ".layer.5." not in k}
    assert not frozen_changed, f"frozen weights changed: {sorted(frozen_changed)[:3]}"
    assert all(torch.equal(v, pretrained.encoder.state_dict()[k]) for k, v in live_state.items()), \
        "the live model was modified"


def test_interpolate_takes_the_fine_tunes_step_only_part_of_the_way(pretrained, bank):
    config = FinetuneConfig(max_epochs=2, batch_size=8, val_fraction=0.0)
    full = finetune(pretrained, _pairs(bank), config, show_bar=False).model
    half = finetune(pretrained, _pairs(bank), replace(config, interpolate=0.5), show_bar=False).model
    start, tuned = trainable_state(pretrained.encoder, 2), trainable_state(full.encoder, 2)
    for name, parameter in trainable_state(half.encoder, 2).items():
        assert torch.allclose(parameter, start[name] + 0.5 * (tuned[name] - start[name]), atol=1e-6), name
    fresh = type(half)(half.encoder, bank, half.config)  # the bank as the interpolated weights encode it
    assert torch.allclose(half.answer_embeddings, fresh.answer_embeddings, atol=1e-5)


def test_finetune_learns_the_accepted_pairs(pretrained, bank):
    pairs = _pairs(bank)
    before = np.mean([pretrained.answer(p.prompt).answer.id == bank.get(p.target_key).id for p in pairs])
    result = finetune(pretrained, pairs, FinetuneConfig(max_epochs=8, batch_size=6, learning_rate=2e-4), show_bar=False)
    after = np.mean([result.model.answer(p.prompt).answer.id == bank.get(p.target_key).id for p in pairs])
    assert after > before or after == 1.0


def test_refit_trains_on_the_validation_pairs_too(pretrained, bank):
    from rsft_plugin.models.retrieval_training import _split, index_pairs

    # arbitrary labels: an answer is learned for a prompt only when that prompt's pair reaches the weights
    questions = ["where is my order", "cancel my subscription", "change my address", "the app keeps crashing",
                 "do you have gift cards", "how do I reset my password", "my coupon does not work",
                 "can I pay with PayPal", "is there a student discount", "who do I call about a broken item",
                 "how long does a refund take", "I want to speak to someone"]
    ids = [answer.id for answer in bank.answers]
    pairs = [TrainingPair(q, ids[(3 * n + 1) % len(ids)]) for n, q in enumerate(questions)]
    config = FinetuneConfig(max_epochs=2, batch_size=4, learning_rate=5e-4, val_fraction=0.25)
    _, val = _split(index_pairs(pairs, bank), config.val_fraction, config.seed)
    assert val, "the split must hold some pairs out for this test to mean anything"
    held_out = [(p.prompt, p.answer_index) for p in val]

    def target_probability(model) -> float:
        return float(np.mean([model.policy(q)[index] for q, index in held_out]))

    first_pass = finetune(pretrained, pairs, config, show_bar=False)
    refit = finetune(pretrained, pairs, replace(config, refit=True), show_bar=False)
    assert first_pass.refit_epochs == 0 and first_pass.train_pairs == len(pairs) - len(val)
    assert refit.refit_epochs == refit.best_epoch >= 1 and refit.train_pairs == len(pairs)
    assert refit.best_epoch == first_pass.best_epoch  # the same first pass chose the epochs
    assert target_probability(refit.model) > 2 * target_probability(first_pass.model)


def test_stopping_on_accuracy_keeps_the_epoch_that_ranks_most_validation_pairs_first(pretrained, bank):
    from rsft_plugin.golden import load_golden
    from rsft_plugin.models.retrieval_training import _split, index_pairs

    # a quarter of the labels wrong, as careless 👍 make them: their loss grows as the model learns the rest
    questions = load_golden(REPO / "data" / "golden.csv", bank, "train")[:40]
    ids = bank.ids
    right = [next(index for index, answer in enumerate(bank.answers) if answer.topic == q.topic) for q in questions]
    pairs = [TrainingPair(q.question, ids[(index + 7 * (n % 4 == 0)) % len(ids)])
             for n, (q, index) in enumerate(zip(questions, right, strict=True))]
    config = FinetuneConfig(max_epochs=4, batch_size=8, learning_rate=3e-4, val_fraction=0.3, patience=4,
                            stop_on="accuracy")
    result = finetune(pretrained, pairs, config, show_bar=False)
    history = result.history
    by_loss = min(history, key=lambda h: h["val_loss"])["epoch"]
    by_accuracy = max(history, key=lambda h: (h["val_accuracy"], -h["val_loss"]))["epoch"]
    assert by_loss != by_accuracy, "the two criteria must disagree for this test to mean anything"
    assert result.best_epoch == by_accuracy
    _, val = _split(index_pairs(pairs, bank), config.val_fraction, config.seed)
    kept = np.mean([int(np.argmax(result.model.policy(p.prompt))) == p.answer_index for p in val])
    assert kept == pytest.approx(history[by_accuracy - 1]["val_accuracy"])  # that epoch's weights, not the last
    by_loss_result = finetune(pretrained, pairs, replace(config, stop_on="loss"), show_bar=False)
    assert by_loss_result.best_epoch == by_loss
    # training hands the kept epoch's bank embeddings to the model instead of encoding the bank again: they must be
    # what the kept weights give
    assert by_loss < by_loss_result.epochs_run, "an earlier epoch must be kept for this check to mean anything"
    assert torch.equal(by_loss_result.model.answer_embeddings,
                       by_loss_result.model.encode([answer.text for answer in bank.answers]))


def test_gate_refuses_a_deliberately_worse_model_and_says_why(pretrained):
    worse = ResponseModel(copy.deepcopy(pretrained.encoder), pretrained.bank, pretrained.config)
    with torch.no_grad():
        for parameter in trainable_state(worse.encoder, 2).values():
            parameter.add_(torch.randn_like(parameter) * 0.5)
    worse = ResponseModel(worse.encoder, pretrained.bank, pretrained.config)
    from rsft_plugin.golden import load_golden

    heldout = load_golden(REPO / "data" / "golden.csv", pretrained.bank, "heldout")
    result = gate(pretrained, worse, heldout, [], GateConfig())
    assert not result.promote and result.candidate_accuracy < result.live_accuracy
    counts = result.evidence.heldout
    assert counts.n == len(heldout) and counts.losses > counts.wins
    assert result.reason.startswith("the held-out test failed") and \
        f"{counts.wins} better, {counts.losses} worse of the {counts.discordant} changed" in result.reason
    same = gate(pretrained, pretrained, heldout, [], GateConfig())  # nothing changed: no evidence it is better
    assert not same.promote and same.evidence.heldout.discordant == 0 and "the candidate is not ahead" in same.reason
    strict = gate(pretrained, pretrained, heldout, [], GateConfig(test="mcnemar"))
    assert not strict.promote and "p = 1 > level 0.2" in strict.reason
    lenient = gate(pretrained, pretrained, heldout, [], GateConfig(level=1.0, topic_level=0.0, rated_level=0.0))
    assert lenient.promote and lenient.candidate_accuracy == lenient.live_accuracy


def test_ratings_written_during_collection_are_neither_lost_nor_half_read(tmp_path, embed_fixed):
    import threading

    store = open_sqlite(tmp_path / "rsft.db")
    for n in range(40):
        _log(store, f"seed{n}", f"question {n} about my refund number {n * 31}", "refund_status", rating=n % 2)
    writer = open_sqlite(tmp_path / "rsft.db")  # another connection, as the action server has
    written: list[str] = []
    stop = threading.Event()

    def rate_continuously() -> None:
        n = 0
        while not stop.is_set() and n < 150:
            turn_id = writer.log_turn(TurnRecord(f"live{n}", None, f"live question {n} on invoices {n * 17}",
                                                 "get_invoice", "get_invoice", "...", "v0001", 0.5, 0.2, [], 5.0))
            writer.rate(turn_id, f"live{n}", n % 2)
            written.append(turn_id)
            n += 1
            stop.wait(0.005)

    thread = threading.Thread(target=rate_continuously)
    thread.start()
    try:
        for _ in range(3):
            prompts = collect_prompts(store, embed_fixed, CollectConfig(min_prompts=1, merge_cosine=0.999), 0)
            for prompt in prompts.prompts:  # everything a collection saw is whole
                assert all(store.turn(t) is not None for t in prompt.turn_ids)
    finally:
        stop.set()
        thread.join()
    try:
        assert written
        ratings = {r["turn_id"] for r in store.db.query("SELECT turn_id FROM ratings")}
        assert set(written) <= ratings, "a rating written during collection was lost"
    finally:
        writer.close()
        store.close()
