"""The reply budget: with `fit_grounding` a reply has room for its whole grounding answer, never less than
`max_new_tokens`; an explicit budget wins; serving and sampling both use it (real tokenizer and writer)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rsft_plugin.generative.budget import FIT_ROOM, reply_budget
from rsft_plugin.generative.writer import Writer

from .conftest import EXPRESS, RETURNS

pytestmark = pytest.mark.writer
QUESTION = "Can I send back a jacket I bought last week?"


def _tokens(writer: Writer, text: str) -> int:
    return len(writer.tokenizer(text, add_special_tokens=False)["input_ids"])


def test_the_budget_fits_the_longest_grounding_answer_the_writer_sees(writer) -> None:
    fitted = replace(writer.settings, fit_grounding=True, max_new_tokens=4, grounding_answers=2)
    longest = max(_tokens(writer, RETURNS), _tokens(writer, EXPRESS))
    assert reply_budget(writer.tokenizer, fitted, [EXPRESS, RETURNS]) == longest + FIT_ROOM
    # only the answers the writer sees count: with one, the third (long) answer is not in its prompt
    one = replace(fitted, grounding_answers=1)
    assert reply_budget(writer.tokenizer, one, [EXPRESS, RETURNS * 3]) == _tokens(writer, EXPRESS) + FIT_ROOM
    # never below the configured budget, and an explicit one wins
    roomy = replace(fitted, max_new_tokens=200)
    assert reply_budget(writer.tokenizer, roomy, [EXPRESS]) == 200
    assert reply_budget(writer.tokenizer, fitted, [RETURNS], max_new_tokens=3) == 3
    # off: the configured budget whatever the grounding
    assert reply_budget(writer.tokenizer, replace(fitted, fit_grounding=False), [RETURNS * 5]) == 4
    # capped at the largest configurable budget
    assert reply_budget(writer.tokenizer, fitted, [RETURNS * 60]) == 512


def test_serving_and_sampling_write_past_max_new_tokens_when_the_grounding_needs_it(writer) -> None:
    fixed = Writer(writer.model, writer.tokenizer,
                   replace(writer.settings, max_new_tokens=4, copy_bias=4.0, fit_grounding=False), writer.base)
    fitted = Writer(writer.model, writer.tokenizer, replace(fixed.settings, fit_grounding=True), writer.base)
    assert fixed.write(QUESTION, [RETURNS], guard=False).new_tokens <= 4
    assert fitted.write(QUESTION, [RETURNS], guard=False).new_tokens > 4
    drawn = fitted.sample(QUESTION, [RETURNS], k=2, seed=1)
    assert max(len(reply.token_ids) for reply in drawn) > 4
