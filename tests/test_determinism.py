"""The same log content and config give the same round, although every logged turn gets a random id.

Two separate installations are fed the same conversations through the real Assistant (so every turn id differs);
a round in each must produce the same prompts, kept-out split, candidates, accept decisions, fine-tuned model and
gate numbers. Real SQLite, the real MiniLM, a short fine-tune.
"""

from __future__ import annotations

import pytest

from rsft_plugin.config import CollectConfig, SampleConfig
from rsft_plugin.golden import load_golden
from rsft_plugin.log import TurnRecord, open_sqlite
from rsft_plugin.models import load_version
from rsft_plugin.models.encoder import embed
from rsft_plugin.models.registry import Registry
from rsft_plugin.stages.collect import collect_prompts
from rsft_plugin.stages.sample import sample_candidates

from .conftest import REPO, feed_traffic, round_config, run_round

pytestmark = pytest.mark.timeout(900)

QUESTIONS = [f"question number {n} about my refund {n * 7919}" for n in range(60)]


def _logged(path, questions: list[str]):
    store = open_sqlite(path)
    for n, text in enumerate(questions):
        turn_id = store.log_turn(TurnRecord(f"s{n}", None, text, "refund_status", "refund_status", "...", "v0001",
                                            0.5, 0.2, [], 5.0))
        store.rate(turn_id, f"s{n}", n % 2)
    return store


def test_the_kept_out_split_follows_the_question_text_not_the_turn_id(tmp_path, pretrained):
    config = CollectConfig(min_prompts=1, gate_fraction=0.3, merge_cosine=0.999)
    first, second = _logged(tmp_path / "a.db", QUESTIONS), _logged(tmp_path / "b.db", QUESTIONS)
    try:
        def embed_fixed(texts):
            return embed(pretrained.encoder, texts)

        a, b = (collect_prompts(store, embed_fixed, config, seed=0) for store in (first, second))
        assert not set(a.gate_turn_ids) & set(b.gate_turn_ids)  # the turn ids differ ...
        kept_a, kept_b = ({p.text for p in s.prompts if p.gate_only} for s in (a, b))
        assert kept_a and kept_a == kept_b  # ... the split does not
        other_seed = {p.text for p in collect_prompts(first, embed_fixed, config, seed=1).prompts if p.gate_only}
        assert other_seed != kept_a  # the round's seed moves the split
    finally:
        first.close()
        second.close()


def test_a_prompts_candidates_do_not_depend_on_the_other_prompts(tmp_path, pretrained):
    store = _logged(tmp_path / "a.db", QUESTIONS[:12])
    try:
        prompts = collect_prompts(store, lambda texts: embed(pretrained.encoder, texts),
                                  CollectConfig(min_prompts=1, gate_fraction=0.0, merge_cosine=0.999), seed=0).prompts
    finally:
        store.close()
    config = SampleConfig(k=4, temperature=1.0)  # a flat policy: the draws are really random
    together = sample_candidates(pretrained, prompts, config)
    alone = sample_candidates(pretrained, prompts[-1:], config)
    last = [c.key for c in together if c.prompt_id == prompts[-1].id]
    assert last == [c.key for c in alone]
    assert [c.key for c in sample_candidates(pretrained, prompts, SampleConfig(k=4, temperature=1.0, seed=1))] != \
        [c.key for c in together]


def test_the_same_conversations_logged_twice_give_the_same_round(tmp_path, pretrained):
    results, configs = [], []
    for name in ("first", "second"):
        directory = tmp_path / name
        directory.mkdir()
        config = round_config(directory)
        registry = Registry(config.paths.models_dir)
        registry.set_live(registry.publish(pretrained).name, "test")
        feed_traffic(config, n=120)
        results.append(run_round(config, show_bar=False))
        configs.append(config)
    first, second = results
    assert first.status == second.status == "promoted", (first.reason, second.reason)
    assert first.stats["gate_prompts"] > 0  # the split really kept some prompts out
    for key in ("prompts", "trainable_prompts", "gate_prompts", "replayed_prompts", "candidates", "accepted",
                "acceptance_rate", "reward_mean", "rated_turns_used", "gate"):
        assert first.stats[key] == second.stats[key], key
    tuned = [{k: v for k, v in r.stats["finetune"].items() if k not in ("examples_per_second", "history")}
             for r in results]
    assert tuned[0] == tuned[1]
    assert [h["val_loss"] for h in first.stats["finetune"]["history"]] == \
        [h["val_loss"] for h in second.stats["finetune"]["history"]]
    rows, examples, turn_ids = [], [], []
    for config, result in zip(configs, results, strict=True):
        with open_sqlite(config.paths.db) as store:
            rows.append([row.to_dict() for row in store.round_candidates(result.round_id)])
            chosen = store.training_examples(result.round_id)
            examples.append([(e.prompt, e.candidate_key) for e in chosen])
            turn_ids.append({t for e in chosen for t in e.turn_ids})
    assert rows[0] == rows[1] and examples[0] == examples[1]  # same candidates, same accept decisions
    assert not turn_ids[0] & turn_ids[1]  # from turns with different ids
    heldout = load_golden(REPO / "data" / "golden.csv", pretrained.bank, "heldout")
    answers = [[a.key for a in load_version(Registry(c.paths.models_dir).live_path(), c.model).answer_many(
        [q.question for q in heldout])] for c in configs]
    assert answers[0] == answers[1]  # the same fine-tuned model


def test_one_generator_per_query_or_one_shared():
    import numpy as np

    from rsft_plugin.models.base import generators_for

    shared = np.random.default_rng(0)
    assert generators_for(shared, 3) == [shared] * 3
    own = [np.random.default_rng(i) for i in range(2)]
    assert generators_for(own, 2) == own
    with pytest.raises(ValueError, match="3 random generators for 2 queries"):
        generators_for([np.random.default_rng(i) for i in range(3)], 2)
