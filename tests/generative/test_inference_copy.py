"""The writer's inference copy (serving.py) and the shared prompt cache of `sample`, on the real SmolLM2.

What must hold: the copy computes what the original model computes (to float rounding), so greedy replies and log q
do not change; a LoRA adapter folded into it gives what peft's unmerged layers give; the copy follows the weights
when they change in place; and K rows that share one read of the prompt draw what K separate prefills draw.
Decode steps read the GGUF's 4-bit blocks (quantised.py): they must compute what the float32 weights compute,
with and without an adapter (which runs beside the blocks), and anything that cannot be exact falls back to float32.
"""

from __future__ import annotations

import time

import pytest
import torch

from rsft_plugin.generative import quantised, serving
from rsft_plugin.generative import writer as writer_module
from rsft_plugin.generative.cache_api import cache_of, with_cache
from rsft_plugin.generative.serving import FastLinear, FusedGatedMLP, build_inference_copy, inference_model
from rsft_plugin.generative.writer import Writer

from .conftest import EXPRESS, RETURNS, lora_model

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


def _decode_step_logits(model, ids: torch.Tensor, rows: int = 1) -> torch.Tensor:
    """The last position's logits as a decode step computes them: the prompt read first, then its last token alone
    (for `rows` identical rows, as sampling decodes K rows at once)."""
    batch = ids.repeat(rows, 1)
    with torch.inference_mode():
        cache = cache_of(model(input_ids=batch[:, :-1], use_cache=True))
        return model(input_ids=batch[:, -1:], **with_cache(cache)).logits


def _float32_copy(model):
    """The inference copy without the 4-bit decode."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(serving, "decode_weights", lambda base, layers: {})
        return build_inference_copy(model)


@pytest.fixture(scope="module")
def tuned(writer):
    return lora_model(writer)


def test_a_folded_adapter_computes_what_peft_computes(writer, tuned) -> None:
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
    monkeypatch.setattr(writer_module, "_shared_prefix_cache", lambda model, prompt, rows, system=None: None)
    separate = writer.sample(QUESTION, [RETURNS], k=3, seed=11, max_new_tokens=10)
    assert [s.token_ids for s in shared] == [s.token_ids for s in separate]
    assert [s.logprob for s in shared] == pytest.approx([s.logprob for s in separate], abs=1e-3)
    assert [s.model_logprob for s in shared] == pytest.approx([s.model_logprob for s in separate], abs=1e-3)
    # and every row's log p is what one-at-a-time teacher forcing gives for its tokens
    prompt = writer.prompt_ids(QUESTION, [RETURNS])
    one_at_a_time = [writer.token_logprobs(prompt, [s.token_ids])[0] for s in shared]
    assert one_at_a_time == pytest.approx([s.model_logprob for s in shared], abs=1e-2)


def test_4bit_decode_steps_compute_what_the_float32_weights_compute(writer) -> None:
    fast = inference_model(writer.model)
    layer = fast.model.layers[0]
    assert layer.self_attn.q_proj.decode is not None and layer.mlp.decode is not None  # 4-bit decode is in use
    assert fast.lm_head.decode.blocks.kind == "q8_0" and layer.self_attn.k_proj.decode.blocks.kind == "q4_1"
    # the blocks de-quantise to the model's own weights, bit for bit (q_proj's rows reordered from llama.cpp's)
    assert torch.equal(layer.self_attn.q_proj.decode.blocks.dequantised(),
                       writer.model.model.layers[0].self_attn.q_proj.weight)
    ids = torch.tensor([writer.prompt_ids(QUESTION, [RETURNS, EXPRESS])])
    reference = _logits(writer.model, ids)[:, -1:]
    for rows in (1, 3):  # one reply; K sampled rows
        step = _decode_step_logits(fast, ids, rows)
        assert torch.allclose(step, reference.expand(rows, -1, -1), atol=1e-3, rtol=1e-4)
    float32 = _float32_copy(writer.model)
    assert float32.model.layers[0].self_attn.q_proj.decode is None
    assert not torch.equal(_decode_step_logits(fast, ids), _decode_step_logits(float32, ids))  # a different path
    assert _greedy(fast, writer, ids, n=16) == _greedy(float32, writer, ids, n=16) == _greedy(writer.model, writer,
                                                                                              ids, n=16)


def test_the_4bit_kernel_multiplies_one_to_eight_rows_as_float32_does(writer) -> None:
    # each row count has its own code (one and two rows keep four partial sums per row, more rows two): all must
    # give x @ W.T of the de-quantised weights, for Q4_1 blocks (a projection) and Q8_0 blocks (lm_head)
    fast = inference_model(writer.model)
    generator = torch.Generator().manual_seed(0)
    for blocks in (fast.model.layers[3].mlp.down_proj.decode.blocks, fast.lm_head.decode.blocks):
        weight = blocks.dequantised()
        for rows in range(1, quantised.DECODE_ROWS + 1):
            x = torch.randn(rows, weight.shape[1], generator=generator)
            product = blocks.matmul(x)
            assert torch.allclose(product, x @ weight.T, atol=2e-4, rtol=1e-4), (blocks.kind, rows)


def test_the_4bit_kernel_shares_a_product_with_its_helper_threads_without_changing_a_bit(writer) -> None:
    # each output is one thread's sum, so any split of the outputs gives the same bits; the helpers do take rows
    fast = inference_model(writer.model)  # builds the kernel
    kernel = quantised._KERNEL["module"]
    generator = torch.Generator().manual_seed(1)
    for blocks in (fast.lm_head.decode.blocks, fast.model.layers[0].mlp.decode.blocks):
        for rows in (1, 2, 5):
            x = torch.randn(rows, blocks.scales.shape[1] * 32, generator=generator)
            alone = blocks.matmul(x)
            helped_before, deadline = kernel.helped_rows(), time.monotonic() + 10
            with quantised.kernel_threads(2):
                # a sleeping helper may need a while to get a core on a busy machine: products until it joins one
                while kernel.helped_rows() == helped_before and time.monotonic() < deadline:
                    assert torch.equal(blocks.matmul(x), alone), (blocks.kind, rows)
            assert kernel.helped_rows() > helped_before, (blocks.kind, rows)
    assert blocks.matmul(x).shape == (5, blocks.scales.shape[0])  # outside the block: this thread alone again


def test_4bit_decode_with_an_adapter_beside_the_blocks_computes_what_peft_computes(writer, tuned) -> None:
    fast = inference_model(tuned)
    q_proj = fast.model.layers[0].self_attn.q_proj
    assert q_proj.decode is not None and len(q_proj.decode.adapters) == 1  # the adapter is not folded in
    assert fast.model.layers[0].self_attn.k_proj.decode.adapters == []
    ids = torch.tensor([writer.prompt_ids(QUESTION, [RETURNS])])
    reference = _logits(tuned, ids)[:, -1:]
    assert not torch.allclose(reference, _logits(writer.model, ids)[:, -1:], atol=1e-2)  # the adapter matters
    for rows in (1, 2):
        assert torch.allclose(_decode_step_logits(fast, ids, rows), reference.expand(rows, -1, -1),
                              atol=1e-3, rtol=1e-4)
    assert _greedy(fast, writer, ids, n=16) == _greedy(tuned, writer, ids, n=16)


def test_a_weight_that_is_not_its_gguf_blocks_decodes_from_float32(writer, caplog) -> None:
    changed = torch.nn.Linear(576, 576, bias=False)
    with torch.no_grad():
        changed.weight.copy_(writer.model.model.layers[0].self_attn.q_proj.weight)
        changed.weight[3, 5] += 1e-6  # one weight, off by a rounding step
    assert quantised.decode_weights(writer.model, {"model.layers.0.self_attn.q_proj": changed}) == {}
    assert "not bit for bit" in caplog.text
    unchanged = writer.model.model.layers[0].self_attn.q_proj
    assert quantised.decode_weights(writer.model, {"model.layers.0.self_attn.q_proj": unchanged}) != {}


def test_without_a_compiler_the_copy_serves_float32_with_one_warning(writer, monkeypatch, caplog) -> None:
    import torch.utils.cpp_extension

    def no_compiler(*args, **kwargs):
        raise RuntimeError("Ninja is required to load C++ extensions")

    monkeypatch.setattr(quantised, "_KERNEL", {})
    monkeypatch.setattr(torch.utils.cpp_extension, "load_inline", no_compiler)
    fast = build_inference_copy(writer.model)
    build_inference_copy(writer.model)  # a second build does not try (or warn) again
    assert quantised.build_kernel() == "RuntimeError: Ninja is required to load C++ extensions"  # nor ahead of it
    assert fast.model.layers[0].self_attn.q_proj.decode is None and fast.model.layers[0].mlp.decode is None
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "the writer decodes from float32 weights: the 4-bit kernel did not build "
        "(RuntimeError: Ninja is required to load C++ extensions)"]
    ids = torch.tensor([writer.prompt_ids(QUESTION, [RETURNS])])
    assert torch.allclose(_decode_step_logits(fast, ids), _logits(writer.model, ids)[:, -1:], atol=1e-3, rtol=1e-4)


def test_the_gguf_is_read_as_the_gguf_package_reads_it() -> None:
    import numpy as np
    from gguf import GGUFReader

    from rsft_plugin.generative.checkpoint import find_gguf

    ours = quantised._gguf_tensors(find_gguf())
    theirs = {t.name: (t.tensor_type.name, np.asarray(t.data)) for t in GGUFReader(str(find_gguf())).tensors
              if t.tensor_type.name in ("Q4_1", "Q8_0")}
    assert len(ours) == 211 and ours.keys() == theirs.keys()
    assert all(ours[name][0] == kind and np.array_equal(ours[name][1], data) for name, (kind, data) in theirs.items())
