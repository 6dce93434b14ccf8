"""The prompt prefixes' key/value caches (prefix.py) on the real SmolLM2: what must hold is that they change nothing.

Every prompt of a writer starts with the same system text; `write` and `sample` start from its keys and values,
read once per model, or from those of the whole system turn (rule and grounding answers) once a question on the same
answers was read. Greedy tokens, sampled tokens and log q must be those of reading the whole prompt (logits to
float rounding), for the base writer and a LoRA writer (whose keys and values differ: the cache belongs to the
model); a prompt that does not start with the prefix's tokens is read whole; no call changes a cache; only the most
recently used system turns are kept.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

from rsft_plugin.generative import prefix as prefix_module
from rsft_plugin.generative.cache_api import with_cache
from rsft_plugin.generative.settings import WriterSettings
from rsft_plugin.generative.writer import Writer

from .conftest import EXPRESS, RETURNS

pytestmark = pytest.mark.writer

QUESTION = "Can I return it after 3 weeks?"


@contextmanager
def whole_prompt() -> Iterator[None]:
    """Inside, writers read their whole prompt, as before the prefix cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Writer, "_system_prefix", lambda self, model, prompt: None)
        yield


def test_every_prompt_starts_with_the_fixed_system_text(writer) -> None:
    prefix = writer.system_prefix_ids()
    assert writer.tokenizer.decode(prefix).endswith("Never invent amounts, deadlines, links, email addresses or phone "
                                                    "numbers.\n\nAnswers:\n")
    assert "Northwind Goods" in writer.tokenizer.decode(prefix) and len(prefix) > 50
    for grounding in ([RETURNS], [RETURNS, EXPRESS], ["1-2 days."]):
        prompt = writer.prompt_ids(QUESTION, grounding)
        assert tuple(prompt[: len(prefix)]) == prefix and len(prompt) > len(prefix)
    other_shop = Writer(writer.model, writer.tokenizer, WriterSettings(shop_name="Acme Outdoor"), writer.base)
    assert other_shop.system_prefix_ids() != prefix  # the shop's name is part of it


@pytest.mark.parametrize("which", ["base", "lora"])
def test_logits_and_greedy_replies_are_those_of_reading_the_whole_prompt(which, writer, tuned_writer) -> None:
    chosen = writer if which == "base" else tuned_writer
    model = chosen.inference_model()
    prompt = chosen.prompt_ids(QUESTION, [RETURNS, EXPRESS])
    system = chosen._system_prefix(model, prompt)
    assert system is not None and system.starts(prompt)
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        whole = model(input_ids=ids).logits[:, -1]
        cached = model(input_ids=ids[:, len(system.ids):], **with_cache(system.fresh())).logits[:, -1]
    assert torch.allclose(cached, whole, atol=1e-4, rtol=1e-5)
    from_cache = chosen.write(QUESTION, [RETURNS, EXPRESS], guard=False)
    with whole_prompt():
        read_whole = chosen.write(QUESTION, [RETURNS, EXPRESS], guard=False)
    assert from_cache.new_tokens == read_whole.new_tokens > 0 and from_cache.written == read_whole.written


def test_the_cache_belongs_to_its_model(writer, tuned_writer) -> None:
    prompt = writer.prompt_ids(QUESTION, [RETURNS])
    base = writer._system_prefix(writer.inference_model(), prompt)
    tuned = tuned_writer._system_prefix(tuned_writer.inference_model(), prompt)
    assert base is not tuned and base.ids == tuned.ids
    # the adapter (on q_proj and v_proj) changes the values
    assert not torch.allclose(base.cache.layers[0].values, tuned.cache.layers[0].values, atol=1e-3)


@pytest.mark.parametrize("which", ["base", "lora"])
def test_samples_and_log_q_are_those_of_reading_the_whole_prompt(which, writer, tuned_writer) -> None:
    chosen = writer if which == "base" else tuned_writer
    from_cache = chosen.sample(QUESTION, [RETURNS, EXPRESS], k=3, seed=7, max_new_tokens=10)
    with whole_prompt():
        read_whole = chosen.sample(QUESTION, [RETURNS, EXPRESS], k=3, seed=7, max_new_tokens=10)
    assert [s.token_ids for s in from_cache] == [s.token_ids for s in read_whole]
    assert [s.logprob for s in from_cache] == pytest.approx([s.logprob for s in read_whole], abs=1e-4)
    assert [s.model_logprob for s in from_cache] == pytest.approx([s.model_logprob for s in read_whole], abs=1e-4)
    one = chosen.sample(QUESTION, [RETURNS], k=1, seed=3, max_new_tokens=6)  # one row: the prefix alone
    with whole_prompt():
        assert [s.token_ids for s in chosen.sample(QUESTION, [RETURNS], k=1, seed=3, max_new_tokens=6)] == [
            s.token_ids for s in one]


def test_a_prompt_that_does_not_start_with_the_prefix_is_read_whole(writer) -> None:
    # a question longer than max_prompt_tokens keeps the prompt's end: its start (the system text) is cut away
    small = Writer(writer.model, writer.tokenizer, WriterSettings(max_prompt_tokens=90, max_new_tokens=6,
                                                                  time_limit_seconds=60.0), writer.base)
    question = "I bought hiking boots from you and " + "they hurt my feet after a long walk, " * 12 + "what now?"
    prompt = small.prompt_ids(question, [RETURNS])
    prefix = small.system_prefix_ids()
    assert len(prompt) == 90 and tuple(prompt[: len(prefix)]) != prefix
    assert small._system_prefix(small.inference_model(), prompt) is None
    reply = small.write(question, [RETURNS], guard=False)
    with whole_prompt():
        assert small.write(question, [RETURNS], guard=False).written == reply.written
    assert reply.new_tokens > 0 and not reply.reason.startswith("error")
    # tokens merged across the boundary: the same length, the last prefix token different
    merged = list(prefix[:-1]) + [prefix[-1] + 1] + prompt[-20:]
    assert small._system_prefix(small.inference_model(), merged) is None


def test_calls_leave_the_cache_as_it_was(writer, monkeypatch) -> None:
    model = writer.inference_model()
    prompt = writer.prompt_ids(QUESTION, [RETURNS])
    system = writer._system_prefix(model, prompt)
    before = [(k.clone(), v.clone(), k.data_ptr(), v.data_ptr()) for k, v in _tensors(system)]
    first = [writer.write(QUESTION, [RETURNS], guard=False).written for _ in range(2)]
    drawn = [s.token_ids for s in writer.sample(QUESTION, [RETURNS], k=2, seed=1, max_new_tokens=6)]
    assert first[0] == first[1]
    for (keys, values), (k0, v0, kv, vv) in zip(_tensors(system), before, strict=True):
        assert torch.equal(keys, k0) and torch.equal(values, v0) and (keys.data_ptr(), values.data_ptr()) == (kv, vv)
    assert writer._system_prefix(model, prompt) is system and system.cache.get_seq_length() == len(system.ids)
    # a fresh cache (read again from scratch) gives the same reply and samples
    monkeypatch.setattr(prefix_module, "_PREFIXES", type(prefix_module._PREFIXES)())
    monkeypatch.setattr(prefix_module, "_HEADS", type(prefix_module._HEADS)())
    assert writer.write(QUESTION, [RETURNS], guard=False).written == first[0]
    assert [s.token_ids for s in writer.sample(QUESTION, [RETURNS], k=2, seed=1, max_new_tokens=6)] == drawn
    assert writer._system_prefix(model, prompt) is not system


def test_concurrent_first_replies_read_the_prefix_once(writer, monkeypatch) -> None:
    monkeypatch.setattr(prefix_module, "_PREFIXES", type(prefix_module._PREFIXES)())
    reads = []
    real_read = prefix_module._read
    monkeypatch.setattr(prefix_module, "_read", lambda model, ids: reads.append(ids) or real_read(model, ids))
    model, ids = writer.inference_model(), writer.system_prefix_ids()
    found = []
    threads = [threading.Thread(target=lambda: found.append(prefix_module.prefix_cache(model, ids)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(reads) == 1 and len(found) == 4 and all(f is found[0] for f in found)


def test_a_question_on_answers_read_before_starts_after_its_system_turn(writer, tuned_writer) -> None:
    for chosen in (writer, tuned_writer):
        model = chosen.inference_model()
        prompt = chosen.prompt_ids("Is express delivery fast?", [EXPRESS])
        head = chosen._system_prefix(model, prompt)
        assert len(head.ids) > len(chosen.system_prefix_ids()) and head.starts(prompt)
        assert chosen.tokenizer.decode(head.ids).endswith("Express delivery costs €9.95 and arrives in 1–2 business "
                                                          "days.<|im_end|>\n")
        assert chosen.tokenizer.decode(prompt[len(head.ids):]).startswith("<|im_start|>user\nIs express delivery")
        other = chosen.prompt_ids("How much is express delivery?", [EXPRESS])
        assert chosen._system_prefix(model, other) is head  # another question, the same answers: the same turn
    # the cache belongs to the model: the tuned writer's keys for the same tokens differ
    base = writer._system_prefix(writer.inference_model(), prompt)
    tuned = tuned_writer._system_prefix(tuned_writer.inference_model(), prompt)
    assert base.ids == tuned.ids and base is not tuned


def test_only_the_most_recently_used_system_turns_are_kept(writer, monkeypatch) -> None:
    monkeypatch.setattr(prefix_module, "_HEADS", type(prefix_module._HEADS)())
    writer = Writer(writer.model, writer.tokenizer, dataclasses.replace(writer.settings, cached_groundings=2),
                    writer.base)
    model = writer.inference_model()
    groundings = [[RETURNS], [EXPRESS], ["1-2 days."]]
    first = [writer._system_prefix(model, writer.prompt_ids(QUESTION, g)) for g in groundings[:2]]
    assert writer._system_prefix(model, writer.prompt_ids(QUESTION, groundings[0])) is first[0]  # used again
    third = writer._system_prefix(model, writer.prompt_ids(QUESTION, groundings[2]))
    kept = prefix_module._HEADS[model]
    assert list(kept.values()) == [first[0], third]  # [EXPRESS], the least recently used, was dropped
    assert writer._system_prefix(model, writer.prompt_ids(QUESTION, groundings[1])) is not first[1]
    # none kept: every prompt starts from the fixed system text
    none = Writer(writer.model, writer.tokenizer, dataclasses.replace(writer.settings, cached_groundings=0),
                  writer.base)
    assert none._system_prefix(model, writer.prompt_ids(QUESTION, [EXPRESS])).ids == none.system_prefix_ids()


def _tensors(system) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in system.cache.layers]
