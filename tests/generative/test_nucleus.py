"""The nucleus filter keeps what transformers' TopPLogitsWarper keeps, without sorting the whole vocabulary."""

from __future__ import annotations

import pytest
import torch
from transformers import TopPLogitsWarper

from rsft_plugin.generative import nucleus
from rsft_plugin.generative.nucleus import NucleusFilter

from .conftest import RETURNS

QUESTION = "Can I return it after 3 weeks if I opened it?"
VOCABULARY = 49152  # SmolLM2's


@pytest.mark.parametrize("top_p", [0.5, 0.9, 0.95, 0.999])
@pytest.mark.parametrize("sharpness", [8.0, 2.0, 0.5, 0.01])  # peaked ... flat (the nucleus reaches past topk)
def test_the_filter_keeps_the_tokens_and_scores_that_top_p_keeps(top_p, sharpness) -> None:
    scores = torch.randn(4, VOCABULARY, generator=torch.Generator().manual_seed(11)) * sharpness
    ids = torch.zeros(4, 1, dtype=torch.long)
    expected = TopPLogitsWarper(top_p=top_p)(ids, scores)
    filtered = NucleusFilter(top_p)(ids, scores)
    kept = torch.isfinite(expected)
    assert torch.equal(torch.isfinite(filtered), kept)
    assert torch.equal(filtered[kept], expected[kept])
    assert kept.sum(dim=-1).min() >= 1


def test_a_nucleus_past_the_candidates_falls_back_to_sorting() -> None:
    scores = torch.zeros(2, 1000)  # uniform: a 0.9 nucleus is 900 tokens
    filtered = NucleusFilter(0.9, candidates=16)(torch.zeros(2, 1, dtype=torch.long), scores)
    assert torch.isfinite(filtered).sum(dim=-1).tolist() == [900, 900]


def test_top_p_one_keeps_everything_and_a_bad_top_p_is_refused() -> None:
    scores = torch.randn(2, 100)
    assert torch.equal(NucleusFilter(1.0)(torch.zeros(2, 1, dtype=torch.long), scores), scores)
    with pytest.raises(ValueError, match="top_p"):
        NucleusFilter(0.0)


@pytest.mark.writer
def test_the_writer_draws_the_replies_and_log_q_that_transformers_top_p_draws(writer, monkeypatch) -> None:
    ours = writer.sample(QUESTION, [RETURNS], k=3, seed=4, max_new_tokens=16)

    class SortingTopP(NucleusFilter):  # transformers' own warper in the same place
        def __call__(self, input_ids, scores):
            return TopPLogitsWarper(top_p=self.top_p)(input_ids, scores)

    monkeypatch.setattr(nucleus, "NucleusFilter", SortingTopP)
    theirs = writer.sample(QUESTION, [RETURNS], k=3, seed=4, max_new_tokens=16)
    assert [s.token_ids for s in ours] == [s.token_ids for s in theirs]
    assert [s.logprob for s in ours] == pytest.approx([s.logprob for s in theirs], abs=1e-5)
