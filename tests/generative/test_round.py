"""One whole round of the generative kind at toy sizes, through promote and the serving process's hot swap.

3 logged prompts x K=2 replies of <= 8 tokens, a lenient threshold rule, one LoRA epoch, a written gate capped at
1 of the 2 held-out questions: ~2 minutes on 2 busy cores (stages ~65 s: sample 19, finetune 25, gate ~10), the
slowest test of the kind; `-m "not slow"` leaves it out.
"""

from __future__ import annotations

import csv
from dataclasses import replace

import pytest

from rsft_plugin.config import load_config
from rsft_plugin.generative.policy import GenerativePolicy
from rsft_plugin.generative.settings import LoraTraining
from rsft_plugin.generative.writer import Writer
from rsft_plugin.models.live import LiveModel
from rsft_plugin.models.registry import Registry
from rsft_plugin.parts import build_parts
from rsft_plugin.round_text import describe_round

from ..conftest import LENIENT_GATE, REPO, feed_traffic, run_round, write_config

pytestmark = [pytest.mark.writer, pytest.mark.slow, pytest.mark.timeout(900)]


def _tiny_golden(path) -> None:
    with open(REPO / "data" / "golden.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    train = [r for r in rows if r["split"] == "train"][:3]
    heldout = [r for r in rows if r["split"] == "heldout"][:2]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["question", "topic", "split"])
        writer.writeheader()
        writer.writerows(train + heldout)


def test_a_generative_round_promotes_a_new_writer_and_serving_swaps_to_it(tmp_path, pretrained, writer) -> None:
    _tiny_golden(tmp_path / "golden.csv")
    path = write_config(tmp_path, model={"kind": "generative"},
                        gate={**LENIENT_GATE, "max_written_questions": 1},
                        collect={"min_prompts": 2, "gate_fraction": 0.0}, sample={"k": 2},
                        reject={"rule": "threshold", "s_min": 0.0, "s_min_written": 0.0, "r_min": 0.0,
                                "min_accepted": 1},  # every written reply too, whatever it says in 8 tokens
                        finetune={"val_fraction": 0.0, "max_epochs": 1},
                        generative={"max_new_tokens": 8, "fit_grounding": False,  # what loaded versions serve with
                                    "grounding_answers": 1,
                                    "threads": 1, "round_threads": 2})
    text = path.read_text(encoding="utf-8").replace(str(REPO / "data" / "golden.csv"), str(tmp_path / "golden.csv"))
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    registry = Registry(config.paths.models_dir)
    registry.set_live(registry.publish(pretrained).name, "retrieval serves the first traffic")
    feed_traffic(config, n=3)

    small = Writer(writer.model, writer.tokenizer, replace(writer.settings, max_new_tokens=8, grounding_answers=1),
                   writer.base)
    generative = GenerativePolicy(pretrained, small, config.model, training=LoraTraining(batch_size=8, max_epochs=1))
    first = registry.publish(generative, notes="pretrained writer").name
    registry.set_live(first, "test")
    live = LiveModel(registry, config.model)
    assert isinstance(live.current, GenerativePolicy) and live.current.name == first

    result = run_round(config, show_bar=False)
    assert result.status == "promoted", result.reason
    assert set(result.stage_seconds) >= {"sample", "score", "reject", "finetune", "gate", "promote"}
    assert result.stats["finetune"]["threads"] == 2  # the round's writer ran with round_threads, not threads
    # the written gate judged both writers on the capped sample: its three measures are in the round's result
    written = result.stats["gate"]["written"]
    assert written["n"] == 1 and result.stats["gate"]["evidence"]["written"]["topic"]["n"] == 1
    for side in ("live", "candidate"):
        assert set(written[side]) >= {"topic_correct", "similarity", "violations"}
        assert 0 <= written[side]["similarity"] <= 1 and written[side]["topic_correct"] in (0.0, 1.0)
    assert any(t.startswith(("better on one (", "the written better-on-one")) for t in result.stats["gate"]["tests"])
    with build_parts(config) as parts:  # `rsft show` prints them
        assert "written replies    topic-correct" in describe_round(result.record(parts), result.round_id)
    promoted = registry.live_name()
    assert promoted == result.new_version != first
    info = [i for i in registry.versions() if i.name == promoted][0]
    assert info.kind == "generative" and info.parent == first

    assert live.refresh() and live.current.name == promoted  # the serving process swaps to the new writer
    assert live.current.writer.settings.threads == 1  # ... and serves with the serving threads
    served = live.current
    assert isinstance(served, GenerativePolicy) and hasattr(served.writer.model, "peft_config")
    # the retriever's own accepted draws (bank answers) are remembered by the new version, written replies are not
    remembered = result.stats["memory"]["examples"]
    assert remembered > 0 and len(served.retriever.memory) == remembered
    answered = served.answer("How do I place an order?")
    assert answered.text and answered.grounding_ids
