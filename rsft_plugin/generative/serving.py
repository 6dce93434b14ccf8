"""The writer's inference copy: the same weights, laid out for fast decoding on a CPU.

Decoding one token reads every weight once (~540 MB in float32), so a reply's time is memory traffic. Four things
cost more than the weights themselves need:

* `nn.Linear` stores W as (out, in) and computes x @ W.T; for one token (a matrix-vector product) MKL's kernel for
  that layout streams the weights at ~11 GB/s on this CPU, while x @ W.T stored contiguous (in, out) runs at
  ~25 GB/s. `FastLinear` holds W.T contiguous.
* The MLP's gate and up projections read the same input: `FusedGatedMLP` does them as one product.
* peft's LoRA layers add two small matmuls and a dropout call per adapted projection and token; here the adapter
  is folded in once: W' = W + scaling * B @ A, one matmul per projection.
* Even contiguous, float32 is 8x the bytes the weights need: they are the GGUF's 4-bit blocks de-quantised. A
  decode step (a few rows) reads those blocks instead (`quantised.py`: a C++ kernel, the blocks checked bit for bit
  against the weights, LoRA beside them, not folded); reading a prompt keeps the float32 W.T.

Training keeps using `Writer.model` (peft, trainable); everything that only reads the model (writing, sampling,
teacher-forced log-probabilities) uses this copy. It shares the embeddings, norms and rotary buffers with the
original and owns only the transposed projection weights (+ the tied `lm_head`: ~540 MB per distinct model); the
4-bit blocks (~110 MB, + ~40 MB for gate and up kept apart for checking) are read once per process and shared.

Numerics: the products are float32 throughout, only summed in another order (and, for a tuned writer's prompt,
W' x instead of W x + B(A x)): logits differ from the original module by float rounding (~1e-6 relative), so a
greedy reply could differ only where two tokens tie to that precision (none of the bench's questions did, see
docs/generative.md). The copy is deterministic: the same prompt always gets the same reply.

Imported by the writer only when a model runs (this module imports torch).
"""

from __future__ import annotations

import copy
import threading
import weakref
from typing import Any

import torch
from torch import nn

from .quantised import DECODE_ROWS, QuantisedDecode, decode_weights

_LOCK = threading.Lock()
# original model -> (weights' version stamp, inference copy); weak so a dropped version frees its copy
_COPIES: weakref.WeakKeyDictionary[Any, tuple[int, Any]] = weakref.WeakKeyDictionary()


def inference_model(model: Any) -> Any:
    """The inference copy of `model`, built on first use and rebuilt when its weights changed in place since
    (an optimizer step or a loaded adapter state bumps the tensors' version counters)."""
    stamp = _weights_stamp(model)
    with _LOCK:
        cached = _COPIES.get(model)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        fast = build_inference_copy(model)
        _COPIES[model] = (stamp, fast)
        return fast


def build_inference_copy(model: Any) -> Any:
    """A module tree like `model`'s (without peft's wrapper) whose linear layers are `FastLinear`, LoRA folded in.

    A module with no linear layers (a test's stand-in) comes back as a shallow copy of itself.
    """
    base = model.get_base_model() if hasattr(model, "peft_config") else model
    if not isinstance(base, nn.Module):
        return base
    shared = {id(t): t for t in [*base.parameters(), *base.buffers()]}
    fast = copy.deepcopy(base, memo=shared)  # new modules, the same tensors
    with torch.no_grad():
        layers = dict(_linear_layers(fast))
        decoders = decode_weights(base, layers)  # {} when the 4-bit path is unavailable (logged)
        for name, module in layers.items():
            parent, _, attr = name.rpartition(".")
            setattr(fast.get_submodule(parent) if parent else fast, attr, FastLinear.of(module, decoders.get(name)))
        for name, module in list(fast.named_modules()):
            if _is_gated_mlp(module):
                parent, _, attr = name.rpartition(".")
                setattr(fast.get_submodule(parent) if parent else fast, attr, FusedGatedMLP(module))
    fast.eval()
    fast.requires_grad_(False)
    return fast


def _is_decode_step(decode: QuantisedDecode | None, x: torch.Tensor) -> bool:
    """Whether this product reads the 4-bit blocks: there are blocks and x has at most `DECODE_ROWS` rows."""
    return decode is not None and x.numel() <= DECODE_ROWS * x.shape[-1]


class FastLinear(nn.Module):
    """y = x @ Wt (+ b) with Wt = W.T stored contiguous: the fast layout for one-token products; a decode step
    (at most `DECODE_ROWS` rows) reads the GGUF's 4-bit blocks instead when `decode` is set (quantised.py)."""

    def __init__(self, weight_t: torch.Tensor, bias: torch.Tensor | None,
                 decode: QuantisedDecode | None = None) -> None:
        super().__init__()
        self.register_buffer("weight_t", weight_t, persistent=False)
        self.bias = bias
        self.decode = decode if bias is None else None

    @classmethod
    def of(cls, module: nn.Module, decode: QuantisedDecode | None = None) -> FastLinear:
        weight, bias = _effective_weight(module)
        return cls(weight.detach().t().contiguous(), None if bias is None else bias.detach(), decode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _is_decode_step(self.decode, x):
            return self.decode(x)
        y = x @ self.weight_t
        return y if self.bias is None else y + self.bias


class FusedGatedMLP(nn.Module):
    """down(act(gate(x)) * up(x)) with gate and up as ONE product: x @ [Wg.T | Wu.T], then split (one pass over
    x and one kernel call instead of two; each output column is the same dot product, the logits are unchanged)."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        gate, up = mlp.gate_proj.weight_t, mlp.up_proj.weight_t
        self.register_buffer("gate_up_t", torch.cat([gate, up], dim=1).contiguous(), persistent=False)
        self.width = gate.shape[1]
        decoders = [mlp.gate_proj.decode, mlp.up_proj.decode]
        self.decode = None if None in decoders else QuantisedDecode.stacked(decoders)
        self.down_proj = mlp.down_proj
        self.act_fn = mlp.act_fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _is_decode_step(self.decode, x):
            gate_up = self.decode(x)
        else:
            gate_up = x @ self.gate_up_t
        return self.down_proj(self.act_fn(gate_up[..., : self.width]) * gate_up[..., self.width:])


def _is_gated_mlp(module: nn.Module) -> bool:
    """A Llama-style MLP whose projections are bias-free `FastLinear`s."""
    parts = [getattr(module, name, None) for name in ("gate_proj", "up_proj", "down_proj")]
    return hasattr(module, "act_fn") and all(isinstance(p, FastLinear) and p.bias is None for p in parts)


def _linear_layers(model: Any) -> list[tuple[str, Any]]:
    """(name, module) of every top-most linear layer: LoRA-wrapped projections whole, their inner layers not."""
    found: list[tuple[str, Any]] = []
    for name, module in model.named_modules():
        if any(name.startswith(outer + ".") for outer, _ in found):
            continue
        if _is_lora_layer(module) or isinstance(module, nn.Linear):
            found.append((name, module))
    return found


def _is_lora_layer(module: Any) -> bool:
    return hasattr(module, "base_layer") and hasattr(module, "lora_A")


def _effective_weight(module: Any) -> tuple[Any, Any]:
    """(W, bias) of a linear layer; for a LoRA layer W + the active adapters' deltas (unless already merged)."""
    if not _is_lora_layer(module):
        return module.weight, module.bias
    layer = module.base_layer
    weight = layer.weight
    if not module.merged:
        for adapter in module.active_adapters:
            if adapter in module.lora_A:
                weight = weight + module.get_delta_weight(adapter)
    return weight, layer.bias


def _weights_stamp(model: Any) -> int:
    """Changes whenever a parameter of `model` is modified in place (torch's per-tensor version counter)."""
    params = getattr(model, "parameters", None)
    if params is None:
        return 0
    return hash(tuple((id(p), p._version) for p in params()))
