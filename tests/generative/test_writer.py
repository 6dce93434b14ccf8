"""The writer on the real SmolLM2 at test sizes: prompt, reply with fallback, K samples with log q."""

from __future__ import annotations

import math

import pytest
import torch

from rsft_plugin.generative import cores
from rsft_plugin.generative.cores import CpuTimes
from rsft_plugin.generative.quantised import kernel_threads_now
from rsft_plugin.generative.settings import WriterSettings
from rsft_plugin.generative.writer import Writer

from .conftest import EXPRESS, RETURNS

pytestmark = pytest.mark.writer

QUESTION = "Can I return it after 3 weeks?"


def test_the_prompt_names_the_shop_the_rule_and_the_answers(writer) -> None:
    system, user = writer.messages(QUESTION, [RETURNS, EXPRESS])
    assert system["role"] == "system" and "Northwind Goods" in system["content"]
    assert "only what the answers below say" in system["content"]
    assert f"1. {RETURNS}" in system["content"] and f"2. {EXPRESS}" in system["content"]
    assert user == {"role": "user", "content": QUESTION}
    text = writer.tokenizer.decode(writer.prompt_ids(QUESTION, [RETURNS]))
    assert text.rstrip().endswith("assistant") and QUESTION in text


def test_long_prompts_lose_grounding_not_the_question(writer) -> None:
    small = Writer(writer.model, writer.tokenizer, WriterSettings(max_prompt_tokens=120), writer.base)
    long_answer = RETURNS + " " + " ".join(["More words about returns."] * 60)
    ids = small.prompt_ids(QUESTION, [long_answer, EXPRESS])
    assert len(ids) <= 120
    text = small.tokenizer.decode(ids)
    assert QUESTION in text and "Northwind Goods" in text and EXPRESS not in text


def test_write_answers_within_the_budget(writer) -> None:
    reply = writer.write(QUESTION, [RETURNS], max_new_tokens=16, guard=False)
    assert reply.new_tokens <= 16 and reply.prompt_tokens > 50
    assert reply.text.strip()
    assert reply.fallback == bool(reply.reason)
    if reply.fallback:  # 16 tokens may end mid-sentence with no sentence end: then the answer itself is served
        assert reply.text == RETURNS and reply.reason == "truncated"
    else:  # cut back to its last sentence end or not, what was written is what was served (the gate judges it)
        assert reply.written == reply.text


def test_a_reply_cut_by_the_budget_is_served_and_recorded_up_to_its_last_sentence_end(writer) -> None:
    biased = Writer(writer.model, writer.tokenizer, WriterSettings(copy_bias=4.0, time_limit_seconds=60.0),
                    writer.base)
    reply = biased.write(QUESTION, [RETURNS], max_new_tokens=20, guard=False)
    assert reply.new_tokens == 20 and not reply.fallback  # the budget cut it after its first sentence
    assert reply.text.endswith(".") and reply.written == reply.text  # the guards and the gate judge what is served


def test_a_timeout_serves_the_grounding_answer(writer) -> None:
    reply = writer.write(QUESTION, [RETURNS, EXPRESS], max_new_tokens=16, time_limit=1e-4)
    assert reply.fallback and reply.reason == "timeout"
    assert reply.text == RETURNS


def test_any_error_serves_the_grounding_answer(writer) -> None:
    class Broken(torch.nn.Module):
        def generate(self, **kwargs):
            raise RuntimeError("out of memory")

    broken = Writer(Broken(), writer.tokenizer, writer.settings, writer.base)
    reply = broken.write(QUESTION, [RETURNS])
    assert reply.fallback and reply.text == RETURNS and "out of memory" in reply.reason


def _fields(reply) -> tuple:
    return reply.text, reply.fallback, reply.reason, reply.written, reply.prompt_tokens, reply.new_tokens


def test_replies_written_together_are_those_written_one_at_a_time(writer, monkeypatch) -> None:
    """The gate writes its held-out questions' replies up to 8 a pass (one token a step): the same replies as `write`
    gives each (which also guesses tokens from the grounding); a pass of one is `write` itself."""
    from rsft_plugin.generative import decoding

    quick = Writer(writer.model, writer.tokenizer,
                   WriterSettings(max_new_tokens=16, fit_grounding=False, time_limit_seconds=60.0), writer.base)
    asked = [(QUESTION, [RETURNS]), ("How fast is express delivery?", [EXPRESS]), ("Do you ship abroad?",
                                                                                   [EXPRESS, RETURNS])]
    requests = asked * 3  # 9: a pass of 8, then one alone
    passes = []
    decode = decoding.decode
    monkeypatch.setattr(decoding, "decode", lambda model, jobs, *args: passes.append(len(jobs)) or decode(
        model, jobs, *args))
    together = quick.write_many(requests)
    assert passes == [8]
    assert [_fields(r) for r in together] == [_fields(quick.write(q, g)) for q, g in requests]
    assert all(r.written for r in together)  # what was decoded was compared, also where it fell back


def test_replies_written_together_fall_back_alone_on_a_timeout_or_an_error(writer, monkeypatch) -> None:
    from rsft_plugin.generative import decoding

    requests = [(QUESTION, [RETURNS]), ("How fast is express delivery?", [EXPRESS])]
    hurried = Writer(writer.model, writer.tokenizer, WriterSettings(time_limit_seconds=1e-4), writer.base)
    replies = hurried.write_many(requests)
    assert [(r.text, r.fallback, r.reason) for r in replies] == [(RETURNS, True, "timeout"), (EXPRESS, True, "timeout")]

    def broken(*_args):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(decoding, "decode", broken)
    replies = writer.write_many(requests)
    assert [r.text for r in replies] == [RETURNS, EXPRESS]
    assert all(r.fallback and "out of memory" in r.reason for r in replies)
    with pytest.raises(ValueError):
        writer.write_many([(QUESTION, [RETURNS]), (QUESTION, [])])


def test_samples_carry_their_log_probability_under_q(writer) -> None:
    samples = writer.sample(QUESTION, [RETURNS], k=2, seed=3, max_new_tokens=16)
    assert len(samples) == 2
    for s in samples:
        assert s.text and 1 <= len(s.token_ids) <= 16
        assert math.isfinite(s.logprob) and s.logprob < 0 and math.isfinite(s.model_logprob)
        assert s.finished == (s.token_ids[-1] == writer.end_id)
    # the untempered log-probability is what teacher forcing gives for the same tokens
    prompt = writer.prompt_ids(QUESTION, [RETURNS])
    forced = writer.token_logprobs(prompt, [s.token_ids for s in samples])
    assert forced == pytest.approx([s.model_logprob for s in samples], abs=1e-2)
    # the same seed draws the same replies; the global RNG is left alone
    state = torch.random.get_rng_state()
    first, again = (writer.sample(QUESTION, [RETURNS], k=2, seed=5, max_new_tokens=4) for _ in range(2))
    assert [s.token_ids for s in again] == [s.token_ids for s in first]
    assert torch.equal(torch.random.get_rng_state(), state)


def test_at_temperature_one_without_top_p_q_is_the_model(writer) -> None:
    samples = writer.sample(QUESTION, [RETURNS], k=2, seed=0, temperature=1.0, top_p=1.0, max_new_tokens=8)
    for s in samples:
        assert s.logprob == pytest.approx(s.model_logprob, abs=1e-3)


def test_the_guard_serves_the_grounding_answer_instead_of_an_invented_fact(writer) -> None:
    from rsft_plugin.generative.faithfulness import is_faithful

    unguarded = writer.write(QUESTION, [RETURNS], max_new_tokens=16, guard=False)
    guarded = writer.write(QUESTION, [RETURNS], max_new_tokens=16, guard=True)
    assert guarded.written == unguarded.written  # greedy: the same words either way
    if unguarded.fallback or is_faithful(unguarded.text, [RETURNS]):
        assert guarded.text == unguarded.text
    else:
        assert guarded.fallback and guarded.reason == "unfaithful" and guarded.text == RETURNS
    # the untuned 135M model answers "No, you cannot return it after 3 weeks." (this keeps the test from passing
    # vacuously; a different torch build may word it otherwise)
    assert guarded.reason == "unfaithful", unguarded.written


def test_overlapping_writers_leave_torchs_thread_count_as_it_was(writer) -> None:
    """torch's thread count is process-wide and the action server writes in several threads: the writer that
    leaves first must not restore the count under one still writing, the last one out must."""
    one_thread = Writer(writer.model, writer.tokenizer, WriterSettings(threads=1, use_idle_cores=False), writer.base)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        first, second = one_thread.threads(), one_thread.threads()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)
        assert torch.get_num_threads() == 1  # the second writer is still inside
        second.__exit__(None, None, None)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("others_busy, expected", [(0.0, 2), (1.0, 1)])
def test_a_reply_runs_on_the_cores_other_processes_left_idle(writer, monkeypatch, others_busy, expected) -> None:
    looks = iter([CpuTimes(0.0, 0.0, 0.0), CpuTimes(1.0, 0.5 + others_busy, 0.5)])  # the writer itself used 0.5 s
    monkeypatch.setattr(cores, "_WATCH", cores.CoreWatch(read=lambda: next(looks), cores=2))
    idle = Writer(writer.model, writer.tokenizer, WriterSettings(threads=1), writer.base)
    assert idle.settings.use_idle_cores  # the default
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with idle.threads():
            assert kernel_threads_now() == expected  # the 4-bit products, on the kernel's own helper threads
            assert torch.get_num_threads() == 1  # torch's own work stays on `threads`
        assert kernel_threads_now() == 1
    finally:
        torch.set_num_threads(before)


def test_every_core_decodes_with_the_kernel_on_every_core_and_trains_with_torch_on_every_core(writer,
                                                                                               monkeypatch) -> None:
    """`threads: 0` (a round's `round_threads: 0`): torch's own operations and the 4-bit products both on every
    core spin against each other, so decoding puts torch on one thread and the kernel on every core; training (no
    4-bit products) keeps torch's count."""
    monkeypatch.setattr(cores, "_usable_cores", lambda: 3)
    every_core = Writer(writer.model, writer.tokenizer, WriterSettings(threads=0), writer.base)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with every_core.threads():
            assert (torch.get_num_threads(), kernel_threads_now()) == (1, 3)
        assert (torch.get_num_threads(), kernel_threads_now()) == (2, 1)
        with every_core.threads(training=True):
            assert (torch.get_num_threads(), kernel_threads_now()) == (2, 1)
    finally:
        torch.set_num_threads(before)


def test_the_copy_bias_raises_the_grounding_tokens_until_the_reply_has_used_them_up(writer) -> None:
    biased = Writer(writer.model, writer.tokenizer, WriterSettings(copy_bias=2.5, grounding_answers=2), writer.base)
    counts = biased.grounding_token_counts([RETURNS, EXPRESS])
    returns_only = biased.grounding_token_counts([RETURNS])
    assert set(returns_only) < set(counts)  # both answers the writer sees count
    assert biased.grounding_token_counts([RETURNS, EXPRESS, "Gift cards never expire."]) == counts  # not a third
    days = writer.tokenizer(" days", add_special_tokens=False)["input_ids"]
    assert len(days) == 1 and returns_only[days[0]] == 1
    assert not set(writer.tokenizer.all_special_ids) & set(counts)
    ids = sorted(returns_only)
    prompt = torch.tensor([[7, 8, 9], [7, 8, 9]])  # the processor counts what follows the prompt's 3 tokens
    process = biased._copy_bias([RETURNS], 3)
    scores = torch.randn(2, len(writer.tokenizer))
    expected = scores.clone()
    expected[:, ids] += 2.5
    assert torch.equal(process(prompt, scores.clone()), expected)
    # the second row has written " days" once: used up, no longer raised; the first row wrote nothing grounded
    written = torch.cat([prompt, torch.tensor([[writer.end_id], days])], dim=1)
    raised = process(written, scores.clone())
    assert torch.equal(raised[0], expected[0])
    assert raised[1, days[0]] == scores[1, days[0]]
    others = [i for i in ids if i != days[0]]
    assert torch.equal(raised[1, others], expected[1, others])
    assert writer._copy_bias([RETURNS], 3) is None  # the fixture's writer has it off


def test_under_the_copy_bias_replies_copy_the_grounding_and_log_q_is_the_biased_distribution(writer) -> None:
    bias = 6.0
    settings = WriterSettings(max_new_tokens=12, fit_grounding=False, copy_bias=bias)
    biased = Writer(writer.model, writer.tokenizer, settings, writer.base)
    counts = biased.grounding_token_counts([RETURNS])
    prompt = biased.prompt_ids(QUESTION, [RETURNS])

    def grounded_share(tokens: list[int]) -> float:
        return sum(t in counts for t in tokens) / len(tokens)

    plain, _ = writer._greedy(prompt, 12, 60.0)
    copied, _ = biased._greedy(prompt, 12, 60.0, biased._copy_bias([RETURNS], len(prompt)))
    # without the bias the untuned model words it its own way ("No, you cannot return it after 3 weeks.")
    assert grounded_share(copied) >= 0.8 > grounded_share(plain)
    # log q of a sample is its log-probability, step by step, under softmax(logits + bias on the grounding tokens
    # the reply has not used up yet), at temperature 1 without top-p: recompute it by teacher forcing
    samples = biased.sample(QUESTION, [RETURNS], k=2, seed=1, temperature=1.0, top_p=1.0)
    for s in samples:
        with torch.inference_mode():
            logits = biased.inference_model()(input_ids=torch.tensor([prompt + list(s.token_ids)])).logits[0]
        expected, used = 0.0, {}
        for step, token in enumerate(s.token_ids):
            scores = logits[len(prompt) - 1 + step].float().clone()
            left = [t for t, n in counts.items() if used.get(t, 0) < n]
            scores[left] += bias
            expected += float(torch.log_softmax(scores, dim=-1)[token])
            used[token] = used.get(token, 0) + 1
        assert s.logprob == pytest.approx(expected, abs=2e-2)
        assert s.logprob != pytest.approx(s.model_logprob, abs=0.5)  # the bias moved q away from the model
