"""The writer's own greedy decode loop (decoding.py) on the real SmolLM2: it must compute what the model computes.

A step's logits are the model forward's (to float rounding) for the base writer and a LoRA writer, and the same bits
whether q, k and v are one 4-bit product or three; greedy replies, with and without the copy bias, are those of
`generate`; the budget and the deadline stop it as they stop `generate`; a model of another shape is decoded by
`generate`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from types import SimpleNamespace

import pytest
import torch

from rsft_plugin.generative import decoding
from rsft_plugin.generative.cache_api import cache_of
from rsft_plugin.generative.settings import WriterSettings
from rsft_plugin.generative.writer import Writer

from .conftest import EXPRESS, RETURNS

pytestmark = pytest.mark.writer

QUESTIONS = ["Can I return it after 3 weeks?", "How fast is express delivery?"]


@contextmanager
def with_generate() -> Iterator[None]:
    """Inside, writers decode with transformers' `generate`, as before the own loop."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(decoding, "supports", lambda model: False)
        yield


def test_the_writers_model_is_decoded_by_the_own_loop_and_other_shapes_are_not(writer) -> None:
    model = writer.inference_model()
    assert decoding.supports(model)
    assert not decoding.supports(torch.nn.Linear(2, 2))
    scaled = SimpleNamespace(config=SimpleNamespace(**{**vars(model.config), "rope_parameters": {
        "rope_type": "linear", "factor": 2.0}}), model=model.model)
    assert not decoding.supports(scaled)  # scaled rotary positions are not what the loop computes


@pytest.mark.parametrize("which", ["base", "lora"])
def test_each_steps_logits_are_the_models(which, writer, tuned_writer) -> None:
    chosen = writer if which == "base" else tuned_writer
    model = chosen.inference_model()
    prompt = chosen.prompt_ids(QUESTIONS[0], [RETURNS])
    following = [13, 1078, 357, 1488, 30]  # any tokens: the steps must match whatever they read
    with torch.inference_mode():
        cache = cache_of(model(input_ids=torch.tensor([prompt]), use_cache=True))
        state = decoding._DecodeState(model, [(cache, 1)], room=len(following))
        steps = torch.stack([state.step([token])[0] for token in following])  # (5, V)
        whole = model(input_ids=torch.tensor([prompt + following])).logits[0, -len(following):]
    assert torch.allclose(steps, whole, atol=1e-4, rtol=1e-5)
    assert state.length == len(prompt) + len(following)


@pytest.mark.parametrize("which", ["base", "lora"])
def test_a_step_of_several_tokens_gives_each_ones_logits_and_forgets_wrong_guesses(which, writer,
                                                                                  tuned_writer) -> None:
    chosen = writer if which == "base" else tuned_writer
    model = chosen.inference_model()
    prompt = chosen.prompt_ids(QUESTIONS[0], [RETURNS])
    following = [13, 1078, 357, 1488, 30]

    def state() -> decoding._DecodeState:
        cache = cache_of(model(input_ids=torch.tensor([prompt]), use_cache=True))
        return decoding._DecodeState(model, [(cache, 1)], room=len(following) + 2)

    with torch.inference_mode():
        one = state()
        singly = torch.stack([one.step([token])[0] for token in following])  # (5, V)
        together = state()
        at_once = together.step(following)
        guessed = state()
        first = guessed.step([*following[:2], 999, 998])  # two right tokens, then two wrong guesses
        guessed.forget(2)
        rest = guessed.step(following[2:])
    assert at_once.shape == singly.shape and together.length == one.length == len(prompt) + len(following)
    assert torch.allclose(at_once, singly, atol=1e-4, rtol=1e-5)
    assert torch.allclose(torch.cat([first[:2], rest]), singly, atol=1e-4, rtol=1e-5)
    assert guessed.length == one.length


def test_a_draft_is_what_followed_the_latest_earlier_occurrence_of_the_last_tokens() -> None:
    assert decoding.lookup_draft([1, 2, 3, 4, 5, 9, 2, 3], 3) == [4, 5, 9]  # [9, 2, 3] never occurred: [2, 3] did
    assert decoding.lookup_draft([5, 6, 7, 5, 6, 8, 5, 6], 2) == [8, 5]  # the latest earlier [5, 6], not the first
    assert decoding.lookup_draft([1, 2, 3, 1, 2, 3], 4) == [1, 2, 3]  # what follows runs up to the end
    assert decoding.lookup_draft([1, 2, 3, 4], 3) == []  # 4 never occurred before
    assert decoding.lookup_draft([1, 2, 3, 1], 3) == []  # one token in common is too little to guess from
    assert decoding.lookup_draft([1, 2, 1, 2], 0) == [] and decoding.lookup_draft([7], 3) == []


def test_guessing_from_the_grounding_writes_the_same_replies_in_fewer_passes(writer, monkeypatch) -> None:
    def copying(draft: int) -> Writer:
        return Writer(writer.model, writer.tokenizer, WriterSettings(
            max_new_tokens=24, fit_grounding=False, copy_bias=4.0, time_limit_seconds=60.0, draft_tokens=draft),
            writer.base)

    passes: list[list[int]] = []  # the tokens each decode step read
    step = decoding._DecodeState.step
    monkeypatch.setattr(decoding._DecodeState, "step", lambda self, tokens: passes.append(tokens) or step(self, tokens))
    for question, grounding in zip(QUESTIONS, [[RETURNS], [EXPRESS]], strict=True):
        passes.clear()
        guessing = copying(4).write(question, grounding, guard=False)
        guessing_passes = len(passes)
        passes.clear()
        single = copying(0).write(question, grounding, guard=False)
        assert (guessing.written, guessing.new_tokens) == (single.written, single.new_tokens)
        assert all(len(tokens) == 1 for tokens in passes)  # draft_tokens 0: one token a pass
        assert len(passes) in (single.new_tokens - 1, single.new_tokens)  # (after the last token when it ended)
        assert guessing_passes < len(passes), (question, guessing.written)  # several tokens in some passes


@pytest.mark.parametrize("which", ["base", "lora"])
def test_q_k_and_v_as_one_4bit_product_give_the_bits_of_three(which, writer, tuned_writer, monkeypatch) -> None:
    chosen = writer if which == "base" else tuned_writer
    model = chosen.inference_model()
    assert all(fused is not None for fused in decoding._fused_qkv(model))  # every layer's three are 4-bit
    prompt = chosen.prompt_ids(QUESTIONS[1], [EXPRESS])

    def steps() -> torch.Tensor:
        with torch.inference_mode():
            cache = cache_of(model(input_ids=torch.tensor([prompt]), use_cache=True))
            state = decoding._DecodeState(model, [(cache, 1)], room=3)
            return torch.stack([state.step([token])[0] for token in (13, 1078, 357)])

    fused = steps()
    monkeypatch.setattr(decoding, "_fused_qkv", lambda model: [None] * len(model.model.layers))
    assert torch.equal(steps(), fused)


@pytest.mark.parametrize("which", ["base", "lora", "copy bias"])
def test_greedy_replies_are_those_of_generate(which, writer, tuned_writer) -> None:
    if which == "copy bias":
        chosen = Writer(writer.model, writer.tokenizer, WriterSettings(
            max_new_tokens=16, fit_grounding=False, copy_bias=4.0, time_limit_seconds=60.0), writer.base)
    else:
        chosen = writer if which == "base" else tuned_writer
    for question, grounding in zip(QUESTIONS, [[RETURNS], [EXPRESS, RETURNS]], strict=True):
        own = chosen.write(question, grounding, guard=False)
        with with_generate():
            generated = chosen.write(question, grounding, guard=False)
        assert own.new_tokens == generated.new_tokens > 0 and own.written == generated.written
        assert (own.fallback, own.reason) == (generated.fallback, generated.reason)


def test_the_budget_and_the_deadline_stop_the_loop(writer) -> None:
    model = writer.inference_model()
    prompt = writer.prompt_ids(QUESTIONS[0], [RETURNS])
    with torch.inference_mode():
        tokens, ended = decoding.greedy(model, prompt, None, 3, time.monotonic() + 60, writer.end_id)
        assert len(tokens) == 3 and not ended  # the untuned writer's reply is longer than 3 tokens
        tokens, ended = decoding.greedy(model, prompt, None, 16, time.monotonic() - 1, writer.end_id)
        assert len(tokens) == 1 and not ended  # past the deadline: the first token, then stop
        whole, ended = decoding.greedy(model, prompt, None, 200, time.monotonic() + 60, writer.end_id)
    assert ended and writer.end_id not in whole and whole[0] == tokens[0]


def test_rows_stepped_together_get_the_logits_each_would_get_alone(writer) -> None:
    """A round samples K replies to one prompt in one product per layer: each row must see its own tokens only."""
    model = writer.inference_model()
    prompt = writer.prompt_ids(QUESTIONS[1], [EXPRESS])
    following = [[13, 1078], [357, 30], [1488, 13]]  # three rows, two steps, different tokens
    with torch.inference_mode():
        cache = cache_of(model(input_ids=torch.tensor([prompt]), use_cache=True))
        together = decoding._DecodeState(model, [(cache, 3)], room=2)
        stepped = [together.step_rows([row[t] for row in following]) for t in range(2)]  # (3, V) each
        for r, row in enumerate(following):
            alone = decoding._DecodeState(model, [(cache, 1)], room=2)
            for t, token in enumerate(row):
                assert torch.allclose(stepped[t][r], alone.step([token])[0], atol=1e-4, rtol=1e-5), (r, t)


def test_prompts_of_different_lengths_stepped_together_get_the_logits_each_would_get_alone(writer) -> None:
    """A round decodes two questions' replies in one product per layer: the shorter prompt's rows start with
    padding, which they must not see, and their positions must be their own."""
    model = writer.inference_model()
    prompts = [writer.prompt_ids(QUESTIONS[0], [RETURNS]), writer.prompt_ids(QUESTIONS[1], [EXPRESS])]
    assert len(prompts[0]) != len(prompts[1])
    following = [[13, 1078], [357, 30], [1488, 13]]  # rows 0-1 continue prompt 0, row 2 prompt 1
    with torch.inference_mode():
        caches = [cache_of(model(input_ids=torch.tensor([prompt]), use_cache=True)) for prompt in prompts]
        together = decoding._DecodeState(model, [(caches[0], 2), (caches[1], 1)], room=2)
        stepped = [together.step_rows([row[t] for row in following]) for t in range(2)]  # (3, V) each
        for r, row in enumerate(following):
            alone = decoding._DecodeState(model, [(caches[0 if r < 2 else 1], 1)], room=2)
            for t, token in enumerate(row):
                assert torch.allclose(stepped[t][r], alone.step([token])[0], atol=1e-4, rtol=1e-5), (r, t)


def test_requests_sampled_together_draw_what_each_draws_alone(writer, monkeypatch) -> None:
    """sample_many decodes consecutive requests in one pass (up to DECODE_ROWS rows), each from its own seed."""
    passes = []
    start = decoding._DecodeState.__init__

    def counted(self, model, groups, room) -> None:
        passes.append(len(groups))
        start(self, model, groups, room)

    monkeypatch.setattr(decoding._DecodeState, "__init__", counted)
    requests = [(QUESTIONS[0], [RETURNS], 3, 5), (QUESTIONS[1], [EXPRESS], 3, 7), (QUESTIONS[1], [RETURNS], 3, 9)]
    together = writer.sample_many(requests, max_new_tokens=10)
    assert passes == [2, 1]  # 3 + 3 rows, then 3 (at most 8 a pass)
    alone = [writer.sample(question, grounding, k, seed=seed, max_new_tokens=10)
             for question, grounding, k, seed in requests]
    assert [[s.token_ids for s in replies] for replies in together] == [[s.token_ids for s in r] for r in alone]
    for mine, theirs in zip(together, alone, strict=True):
        assert [s.logprob for s in mine] == pytest.approx([s.logprob for s in theirs], abs=1e-3)
        assert [s.model_logprob for s in mine] == pytest.approx([s.model_logprob for s in theirs], abs=1e-3)


def test_decode_passes_group_consecutive_requests_up_to_the_row_limit() -> None:
    from rsft_plugin.generative.samples import decode_passes

    assert decode_passes([4, 4, 4, 2, 2], 8) == [range(0, 2), range(2, 5)]
    assert decode_passes([10, 2, 7], 8) == [range(0, 1), range(1, 2), range(2, 3)]  # one of more rows: alone
    assert decode_passes([], 8) == []


@pytest.mark.parametrize("own_loop", [True, False])
def test_sampled_tokens_follow_q(writer, own_loop) -> None:
    """Each reply's first token is a draw from q (softmax of the scores after temperature and top-p): 600 draws by
    the own loop (and by `generate`) against q's probabilities, computed here from the model's logits, by a
    chi-square test (fixed seeds, so the same verdict every run; drawing from the untempered model fails it)."""
    from scipy.stats import chisquare

    from rsft_plugin.generative.nucleus import sampling_processors

    temperature, top_p = 0.8, 0.95
    prompt = writer.prompt_ids(QUESTIONS[1], [EXPRESS])
    with torch.inference_mode():
        logits = writer.inference_model()(input_ids=torch.tensor([prompt])).logits[:, -1].float()
    q = torch.softmax(sampling_processors(temperature, top_p)(torch.tensor([prompt]), logits), dim=-1)[0]
    with nullcontext() if own_loop else with_generate():
        firsts = [s.token_ids[0] for seed in range(20) for s in writer.sample(
            QUESTIONS[1], [EXPRESS], k=30, seed=seed, temperature=temperature, top_p=top_p, max_new_tokens=1)]
    assert all(q[token] > 0 for token in firsts), "a token outside the nucleus was drawn"
    common = [int(t) for t in torch.nonzero(q * len(firsts) >= 5).flatten()]  # bins expected >= 5 times
    observed = [firsts.count(t) for t in common] + [sum(t not in common for t in firsts)]
    expected = [float(q[t]) * len(firsts) for t in common]
    expected.append(len(firsts) - sum(expected))
    assert len(common) >= 4  # a spread distribution: the test can tell q from another
    assert chisquare(observed, expected).pvalue > 1e-3, list(zip(observed, expected, strict=True))
