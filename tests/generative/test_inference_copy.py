"""The writer's inference copy (serving.py) and the shared prompt cache of `sample`, on the real SmolLM2.

What must hold: the copy computes what the original model computes (to float rounding), so greedy replies and log q
do not change; a LoRA adapter folded into it gives what peft's unmerged layers give; the copy follows the weights
when they change in place; and K rows that share one read of the prompt draw what K separate prefills draw.
"""

from __future__ import annotations

import copy

import pytest
import torch

from rsft_plugin.generative import writer as writer_module
from rsft_plugin.generative.serving import FastLinear, FusedGatedMLP, inference_model
from rsft_plugin.generative.writer import Writer

from .conftest import EXPRESS, RETURNS

pytestmark = pytest.mark.writer

QUESTION = "Can I return it after 3 weeks?"


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=ids).logits


def _greedy(model, writer: Writer, ids: torch.Tensor, n: int = 12) -> list[int]:
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                             min_new_tokens=n, do_sample=False, pad_token_id=writer.pad_id)
    return out[0, ids.shape[1]:].tolist()


def test_the_copy_computes_what_the_model_computes(writer) -> None:
    fast = inference_model(writer.model)
    assert fast is not writer.model and inference_model(writer.model) is fast  # built once, then shared
    assert isinstance(fast.lm_head, FastLinear) and isinstance(fast.model.layers[0].self_attn.q_proj, FastLinear)
    assert isinstance(fast.model.layers[0].mlp, FusedGatedMLP)
    assert fast.model.embed_tokens.weight is writer.model.model.embed_tokens.weight  # shared, not copied
    ids = torch.tensor([writer.prompt_ids(QUESTION, [RETURNS, EXPRESS])])
    assert torch.allclose(_logits(fast, ids), _logits(writer.model, ids), atol=1e-3, rtol=1e-4)
    assert _greedy(fast, writer, ids) == _greedy(writer.model, writer, ids)


def test_a_folded_adapter_computes_what_peft_computes(writer) -> None:
    from peft import LoraConfig, get_peft_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        tuned = get_peft_model(copy.deepcopy(writer.model), LoraConfig(r=8, lora_alpha=16,
                                                                       target_modules=["q_proj", "v_proj"]))
        for name, param in tuned.named_parameters():
            if "lora_B" in name:  # a fresh adapter is zero: give it weights that change the logits
                torch.nn.init.normal_(param, std=0.05)
    tuned.eval()
    ids = torch.tensor([writer.prompt_ids(QUESTION, [RETURNS])])
    peft_logits = _logits(tuned, ids)
    assert not torch.allclose(peft_logits, _logits(writer.model, ids), atol=1e-2)  # the adapter matters
    assert torch.allclose(_logits(inference_model(tuned), ids), peft_logits, atol=1e-3, rtol=1e-4)
    # an in-place change of the adapter (an optimizer step, a loaded best epoch) rebuilds the copy
    before = inference_model(tuned)
    with torch.no_grad():
        next(p for n, p in tuned.named_parameters() if "lora_B" in n).mul_(-1.0)
    after = inference_model(tuned)
    assert after is not before
    assert torch.allclose(_logits(after, ids), _logits(tuned, ids), atol=1e-3, rtol=1e-4)


def test_sharing_the_prompt_across_rows_draws_what_separate_prefills_draw(writer, monkeypatch) -> None:
    shared = writer.sample(QUESTION, [RETURNS], k=3, seed=11, max_new_tokens=10)
    monkeypatch.setattr(writer_module, "_shared_prefix_cache", lambda model, prompt, rows: None)
    separate = writer.sample(QUESTION, [RETURNS], k=3, seed=11, max_new_tokens=10)
    assert [s.token_ids for s in shared] == [s.token_ids for s in separate]
    assert [s.logprob for s in shared] == pytest.approx([s.logprob for s in separate], abs=1e-3)
    assert [s.model_logprob for s in shared] == pytest.approx([s.model_logprob for s in separate], abs=1e-3)
    # and every row's log p is what one-at-a-time teacher forcing gives for its tokens
    prompt = writer.prompt_ids(QUESTION, [RETURNS])
    one_at_a_time = [writer.token_logprobs(prompt, [s.token_ids])[0] for s in shared]
    assert one_at_a_time == pytest.approx([s.model_logprob for s in shared], abs=1e-2)
