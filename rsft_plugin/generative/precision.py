"""The arithmetic of LoRA training: float32, or bfloat16 where the CPU multiplies it natively.

On a CPU with AVX512-BF16 or AMX a matrix product in bfloat16 is several times faster than in float32, so with
`lora_precision` bfloat16 (or auto on such a CPU) the training passes run under `torch.autocast` and, for the
length of the fine-tune, two more things change on the trainable copy (docs/generative.md has the measurements):

* its frozen linear weights are bfloat16 copies: autocast would otherwise cast every weight at every pass;
* its attention runs in float32 (SDPA with autocast off): this torch's bfloat16 attention backward on CPU took
  three times as long as float32's and undid most of the gain.

The adapter, its gradients, AdamW's state and the loss stay float32. Both changes are undone when training ends,
so the trained writer serves and samples exactly as a float32-trained one would with the same adapter: its frozen
weights are again the live writer's own tensors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

FLOAT32_ATTENTION = "rsft_sdpa_float32"  # the name the attention below is registered under with transformers


def training_precision(wanted: str) -> str:
    """"float32" or "bfloat16" for a LoRA fine-tune's `precision` setting on this CPU.

    "auto" takes bfloat16 only where the CPU multiplies it natively (AVX512-BF16 or AMX tiles); elsewhere torch
    emulates bfloat16 and float32 is the faster choice.
    """
    if wanted != "auto":
        return wanted
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private: absent means unknown, float32
    native = any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)
    return "bfloat16" if native else "float32"


@contextmanager
def training_arithmetic(model: Any, precision: str) -> Iterator[None]:
    """Inside the block, `model` (a trainable copy) trains in `precision` as the module docstring says; its
    weights and attention are restored on the way out, also after an error."""
    if precision != "bfloat16":
        yield
        return
    import torch

    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    kept = []
    for module in causal_lm.modules():
        if isinstance(module, torch.nn.Linear) and not module.weight.requires_grad:
            kept.append((module, module.weight))
            module.weight = torch.nn.Parameter(module.weight.detach().to(torch.bfloat16), requires_grad=False)
    attention = causal_lm.config._attn_implementation
    if _register_float32_attention():
        causal_lm.set_attn_implementation(FLOAT32_ATTENTION)
    try:
        yield
    finally:
        causal_lm.set_attn_implementation(attention)
        for module, weight in kept:
            module.weight = weight


def _register_float32_attention() -> bool:
    """Register SDPA in float32 (autocast off inside) with transformers (registering again is harmless); False where
    this transformers has no registry for it (training then keeps the model's own attention)."""
    try:
        from transformers import AttentionInterface
        from transformers.integrations.sdpa_attention import sdpa_attention_forward
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError:
        return False
    import torch

    def float32_sdpa(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any) -> Any:
        with torch.autocast("cpu", enabled=False):
            return sdpa_attention_forward(module, query.float(), key.float(), value.float(), attention_mask, **kwargs)

    AttentionInterface.register(FLOAT32_ATTENTION, float32_sdpa)
    AttentionMaskInterface.register(FLOAT32_ATTENTION, sdpa_mask)
    return True
