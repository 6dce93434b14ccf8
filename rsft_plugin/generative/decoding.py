"""The writer's greedy decode loop: one token at a time through the inference copy's own layers.

A served reply spends most of its time decoding (~48 steps after one prefill). On this machine a step took ~36 ms
through transformers (`generate` and the model's forward), of which ~23 ms are the 4-bit products (quantised.py)
and ~12 ms Python around them: keyword plumbing, mask and cache objects, the attention dispatch, per layer. This loop
runs the same products and the same float32 arithmetic with none of that around it: ~4 ms less a step, ~0.17 s a
48-token reply (docs/generative.md). It keeps the keys and values in tensors allocated once per reply.

It is written for the one architecture the writer uses (Llama: RMSNorm, rotary positions without scaling, grouped
query attention, gated SiLU MLP; SmolLM2 is one) and `supports` says when a model is not that: the writer then
decodes with `generate`, as correct and slower. Logits agree with the model's forward to float rounding (the
attention's sums run in another order); tests check them, and greedy replies, against `generate`.

Imported only when a model runs (this module imports torch).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch


def supports(model: Any) -> bool:
    """Whether `model` is the Llama shape this loop computes (else the writer uses `generate`)."""
    config = getattr(model, "config", None)
    inner = getattr(model, "model", None)
    if config is None or getattr(config, "model_type", None) != "llama" or inner is None:
        return False
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    plain_rope = rope.get("rope_type", rope.get("type", "default")) == "default"
    return (plain_rope and getattr(config, "hidden_act", None) == "silu"
            and not getattr(config, "attention_bias", True) and hasattr(inner, "rotary_emb")
            and all(hasattr(layer, "self_attn") and hasattr(layer, "mlp") for layer in inner.layers))


def greedy(model: Any, prompt: Sequence[int], cache: Any, budget: int, deadline: float, end_id: int,
           processors: Any = None) -> tuple[list[int], bool]:
    """(the reply's tokens before the end-of-turn token, whether it ended) for `prompt`, of which `cache` (a
    transformers cache, or None) holds the first tokens' keys and values; stops after `budget` tokens or at
    `deadline` (time.monotonic()). `processors` (a transformers LogitsProcessorList: the copy bias) sees the prompt
    and reply so far, as under `generate`."""
    known = cache.get_seq_length() if cache is not None else 0
    prefill = model(input_ids=torch.tensor([list(prompt[known:])]), past_key_values=cache, use_cache=True,
                    logits_to_keep=1)
    state = _DecodeState(model, prefill.past_key_values, room=budget)
    logits = prefill.logits[0, -1]
    sequence = list(prompt)
    new: list[int] = []
    while True:
        if processors is not None:
            logits = processors(torch.tensor([sequence]), logits.unsqueeze(0))[0]
        token = int(torch.argmax(logits))
        if token == end_id:
            return new, True
        new.append(token)
        sequence.append(token)
        if len(new) >= budget or time.monotonic() > deadline:
            return new, False
        logits = state.step(token)


class _DecodeState:
    """One reply's keys and values (allocated once) and the step that appends a token to them."""

    def __init__(self, model: Any, cache: Any, room: int) -> None:
        self.model = model
        config = model.config
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        rotary = model.model.rotary_emb
        self.inv_freq, self.rope_scale = rotary.inv_freq.float(), rotary.attention_scaling
        self.length = cache.get_seq_length()
        self.keys, self.values = [], []
        for known_keys, known_values in _layers(cache):  # (1, kv_heads, length, head_dim) each
            keys = known_keys.new_empty((1, self.kv_heads, self.length + room, self.head_dim))
            values = torch.empty_like(keys)
            keys[:, :, : self.length], values[:, :, : self.length] = known_keys, known_values
            self.keys.append(keys)
            self.values.append(values)

    def step(self, token: int) -> torch.Tensor:
        """The next token's logits (vocabulary,) after `token`, its keys and values appended."""
        inner = self.model.model
        x = inner.embed_tokens.weight[token].view(1, 1, -1)  # (1, 1, hidden)
        cos, sin = self._rotation(self.length)
        at = self.length
        for keys, values, layer in zip(self.keys, self.values, inner.layers, strict=True):
            attention = layer.self_attn
            h = _rms_norm(x, layer.input_layernorm)
            query = _rotate(attention.q_proj(h).view(1, self.heads, self.head_dim), cos, sin)
            keys[0, :, at] = _rotate(attention.k_proj(h).view(1, self.kv_heads, self.head_dim), cos, sin)[0]
            values[0, :, at] = attention.v_proj(h).view(self.kv_heads, self.head_dim)
            # grouped query attention: each key/value head serves heads / kv_heads query heads
            grouped = query.view(1, self.kv_heads, self.heads // self.kv_heads, self.head_dim)
            weights = torch.softmax(grouped @ keys[:, :, : at + 1].transpose(2, 3) * attention.scaling, dim=-1)
            mixed = (weights @ values[:, :, : at + 1]).reshape(1, 1, self.heads * self.head_dim)
            x = x + attention.o_proj(mixed)
            x = x + layer.mlp(_rms_norm(x, layer.post_attention_layernorm))
        self.length += 1
        return self.model.lm_head(_rms_norm(x, inner.norm))[0, -1]

    def _rotation(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin (1, head_dim) of the rotary embedding at `position`, as the model's rotary module computes."""
        freqs = torch.tensor([[float(position)]]) * self.inv_freq
        angles = torch.cat((freqs, freqs), dim=-1)
        return angles.cos() * self.rope_scale, angles.sin() * self.rope_scale


def _layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer of a transformers DynamicCache (its layout since transformers 5, and before)."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (1, heads, head_dim) at one position, rotated: x cos + rotate_half(x) sin."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def _rms_norm(x: torch.Tensor, norm: Any) -> torch.Tensor:
    """The model's RMSNorm in float32: weight * x / sqrt(mean(x^2) + eps)."""
    return norm.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon))
