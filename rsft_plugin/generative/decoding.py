"""The writer's decode loops: one token at a time through the inference copy's own layers, greedy for serving
(`greedy`, one reply, with guessed tokens), and for rounds and the gate several replies to several prompts at once
(`decode`: sampled, or greedy).

A served reply spends most of its time decoding (~48 steps after one prefill). On this machine a step took ~36 ms
through transformers (`generate` and the model's forward), of which ~23 ms are the 4-bit products (quantised.py)
and ~12 ms Python around them: keyword plumbing, mask and cache objects, the attention dispatch, per layer. This loop
runs the same products and the same float32 arithmetic with none of that around it: ~4 ms less a step, ~0.17 s a
48-token reply (docs/generative.md). It keeps the keys and values in tensors allocated once per reply, and reads
each layer's q, k and v projections as one 4-bit product (each output is the dot product its own projection
computes, so the same bits; ~0.6 ms less a step). A step can also read a few tokens guessed from the prompt and keep
those the writer would have chosen (`draft_tokens`): a grounded reply copies its grounding answer's words.

It is written for the one architecture the writer uses (Llama: RMSNorm, rotary positions without scaling, grouped
query attention, gated SiLU MLP; SmolLM2 is one) and `supports` says when a model is not that: the writer then
decodes with `generate`, as correct and slower. Logits agree with the model's forward to float rounding (the
attention's sums run in another order); tests check them, and greedy replies, against `generate`.

Imported only when a model runs (this module imports torch).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import torch

from .cache_api import cache_of, with_cache
from .quantised import QuantisedDecode

_LOCK = threading.Lock()
# inference copy -> per layer, its q, k and v projections as one 4-bit product (None: not all three are 4-bit)
_FUSED_QKV: weakref.WeakKeyDictionary[Any, list[QuantisedDecode | None]] = weakref.WeakKeyDictionary()


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
           processors: Any = None, draft: int = 0) -> tuple[list[int], bool]:
    """(the reply's tokens before the end-of-turn token, whether it ended) for `prompt`, of which `cache` (a
    transformers cache, or None) holds the first tokens' keys and values; stops after `budget` tokens or at
    `deadline` (time.monotonic()). `processors` (a transformers LogitsProcessorList: the copy bias) sees the prompt
    and reply so far, as under `generate`.

    With `draft` > 0 each step also reads up to `draft` tokens guessed by looking the reply's last tokens up in the
    prompt (`lookup_draft`: a grounded reply copies runs of its grounding answer) and keeps the guesses the model
    itself would have chosen, in one pass over the weights; a wrong guess costs a little more arithmetic, never a
    different token choice than one token at a time would make, up to float rounding (the products' sums run in
    another order for several rows)."""
    prefill = _prefill(model, prompt, cache)
    state = _DecodeState(model, [(cache_of(prefill), 1)], room=budget + draft)
    sequence = list(prompt)
    new: list[int] = []
    rows, guesses = prefill.logits[0, -1:], []  # rows[i]: the logits after the step's token and guesses[:i]
    while True:
        for at, logits in enumerate(rows):
            if processors is not None:
                logits = processors(torch.tensor([sequence]), logits.unsqueeze(0))[0]
            token = int(torch.argmax(logits))
            if token == end_id:
                return new, True
            new.append(token)
            sequence.append(token)
            if len(new) >= budget or time.monotonic() > deadline:
                return new, False
            if at == len(guesses) or token != guesses[at]:
                break
        state.forget(len(guesses) - at)  # the first wrong guess and those after it
        guesses = lookup_draft(sequence, min(draft, budget - len(new) - 1))
        rows = state.step([token, *guesses])


@dataclass(frozen=True)
class DecodeJob:
    """`rows` replies to draw for one prompt: `cache` (a transformers cache, or None) holds the prompt's first tokens
    (one row), `processors` (or None) turn a row's logits into the scores q it is drawn from (copy bias, temperature,
    top-p), `generator` draws them (None: the highest score, greedy); the job stops after `budget` tokens or at
    `deadline` (time.monotonic())."""

    prompt: Sequence[int]
    cache: Any
    rows: int
    budget: int
    deadline: float
    processors: Any
    generator: torch.Generator | None


def decode(model: Any, jobs: Sequence[DecodeJob], end_id: int, pad_id: int
           ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Each job's replies, decoded together: every step reads one token of every job's rows in one product per
    layer (a round's 4 replies to 2 prompts: 8 rows cost ~1.3x what 4 do; docs/generative.md). Each row's token is
    drawn from the softmax of its job's processed scores with its job's generator, as `generate(do_sample=True)`
    draws them with the global RNG seeded alike, or is the highest score for a job without a generator (greedy,
    as `greedy` one token a step): a row that has ended gets `pad_id`, and a job stops when every
    row of it has ended, after its budget or at its deadline. A job's draws do not depend on the other jobs (its
    logits differ only by float rounding: the products' sums run in another order for more rows). Each prompt's
    rest is read once and its keys and values copied to its rows.

    Returns per job the tokens (rows, T), and per token log q (from the processed scores: what it was drawn from)
    and log p (the untempered model), (rows, T) each.
    """
    from .batches import chosen_logprobs

    prefills = [_prefill(model, job.prompt, job.cache) for job in jobs]
    starts = [0, *accumulate(job.rows for job in jobs)]  # job j's rows: starts[j]:starts[j+1]
    logits = torch.cat([pre.logits[:, -1].float().expand(job.rows, -1)  # (rows, V): all rows start from the prompt
                        for pre, job in zip(prefills, jobs, strict=True)])
    sequences = [torch.tensor([list(job.prompt)]).repeat(job.rows, 1) for job in jobs]
    running = torch.ones(starts[-1], dtype=torch.bool)
    active = [True] * len(jobs)
    drawn: list[list[torch.Tensor]] = [[] for _ in jobs]
    log_q: list[list[torch.Tensor]] = [[] for _ in jobs]
    log_p: list[list[torch.Tensor]] = [[] for _ in jobs]
    state = None  # allocated at the first step: every row may end at its first token
    while True:
        tokens = torch.full((starts[-1],), pad_id)  # rows of a stopped job read padding until all stop
        for j, job in enumerate(jobs):
            if not active[j]:
                continue
            rows = slice(starts[j], starts[j + 1])
            scores = logits[rows] if job.processors is None else job.processors(sequences[j], logits[rows].clone())
            chosen = torch.where(running[rows], _draw(scores, job.generator), pad_id)
            drawn[j].append(chosen)
            log_q[j].append(chosen_logprobs(scores.unsqueeze(1), chosen.unsqueeze(1))[:, 0])
            log_p[j].append(chosen_logprobs(logits[rows].unsqueeze(1), chosen.unsqueeze(1))[:, 0])
            sequences[j] = torch.cat((sequences[j], chosen.unsqueeze(1)), dim=1)
            running[rows] &= chosen != end_id
            if not running[rows].any() or len(drawn[j]) >= job.budget or time.monotonic() > job.deadline:
                active[j] = False
            tokens[rows] = chosen
        if not any(active):
            return [(torch.stack(d, dim=1), torch.stack(q, dim=1), torch.stack(p, dim=1))
                    for d, q, p in zip(drawn, log_q, log_p, strict=True)]
        if state is None:
            groups = [(cache_of(pre), job.rows) for pre, job in zip(prefills, jobs, strict=True)]
            state = _DecodeState(model, groups, room=max(job.budget for job in jobs))
        logits = state.step_rows(tokens.tolist())


def _prefill(model: Any, prompt: Sequence[int], cache: Any) -> Any:
    """The model's output for the tokens of `prompt` that `cache` (or None) does not hold yet: the cache grown by
    them, and the logits after the last one."""
    known = cache.get_seq_length() if cache is not None else 0
    return model(input_ids=torch.tensor([list(prompt[known:])]), **with_cache(cache), use_cache=True,
                 logits_to_keep=1)


def _draw(scores: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row (rows, V) from softmax(scores), drawn among the tokens whose score is not -inf (top-p
    leaves a few dozen of 49,152): the same distribution as drawing over the whole vocabulary, without the random
    number per token that takes torch.multinomial ~5 ms a step for 4 rows. No generator: the highest score."""
    if generator is None:
        return scores.argmax(dim=-1)
    most = int(torch.isfinite(scores).sum(dim=-1).max())
    best, index = scores.topk(most, dim=-1)  # (rows, most): a row with fewer tokens left has -inf at its end
    picked = torch.multinomial(torch.softmax(best, dim=-1), 1, generator=generator)  # (rows, 1)
    return index.gather(1, picked).squeeze(1)


def lookup_draft(sequence: Sequence[int], most: int, longest_match: int = 3, shortest_match: int = 2) -> list[int]:
    """Up to `most` tokens that followed the latest earlier occurrence of `sequence`'s last `longest_match` tokens
    (else of fewer, down to `shortest_match`), or [] when they never occurred before. A one-token match guessed
    wrong too often: on 37 golden-set replies, matching down to one token left the slowest reply slower than
    without guesses; down to two, the slowest was faster too (docs/generative.md)."""
    if most <= 0:
        return []
    for n in range(min(longest_match, len(sequence) - 1), shortest_match - 1, -1):
        tail = list(sequence[-n:])
        for start in range(len(sequence) - n - 1, -1, -1):
            if sequence[start] == tail[0] and list(sequence[start:start + n]) == tail:
                return list(sequence[start + n:start + n + most])
    return []


class _DecodeState:
    """The keys and values of one reply, or of several rows of replies to one or more prompts (allocated once), and
    the step that appends tokens to them.

    Prompts of different lengths are right-aligned: a shorter prompt's rows start with `pad` masked positions, so
    every row's next token is written at the same index, and its rotary position is that index less its padding."""

    def __init__(self, model: Any, groups: Sequence[tuple[Any, int]], room: int) -> None:
        """`groups`: (a transformers cache of one row, or of `rows`; how many rows continue from it) per prompt."""
        self.model = model
        config = model.config
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        rotary = model.model.rotary_emb
        self.inv_freq, self.rope_scale = rotary.inv_freq.float(), rotary.attention_scaling
        lengths = [cache.get_seq_length() for cache, _ in groups]
        self.length = max(lengths)  # the index the next token is written at, in every row
        pads = [self.length - length for length in lengths]
        row_pads = [pad for pad, (_, rows) in zip(pads, groups, strict=True) for _ in range(rows)]
        self.pad = torch.tensor(row_pads) if any(pads) else None  # (rows,): masked positions each row starts with
        self.fused_qkv = _fused_qkv(model)
        total = sum(rows for _, rows in groups)
        self.keys, self.values = [], []
        for layer_caches in zip(*(_layers(cache) for cache, _ in groups), strict=True):
            first = layer_caches[0][0]  # (1 or rows, kv_heads, length, head_dim)
            allocate = first.new_empty if self.pad is None else first.new_zeros  # padding must hold numbers, not NaN
            keys = allocate((total, self.kv_heads, self.length + room, self.head_dim))
            values = allocate((total, self.kv_heads, self.length + room, self.head_dim))
            at = 0
            for (known_keys, known_values), (_, rows), pad in zip(layer_caches, groups, pads, strict=True):
                keys[at: at + rows, :, pad: self.length] = known_keys
                values[at: at + rows, :, pad: self.length] = known_values
                at += rows
            self.keys.append(keys)
            self.values.append(values)

    def step(self, tokens: Sequence[int]) -> torch.Tensor:
        """The logits (len(tokens), vocabulary) after each of `tokens` in turn (one reply's), their keys and values
        appended."""
        return self._forward(torch.tensor([list(tokens)]))[0]

    def step_rows(self, tokens: Sequence[int]) -> torch.Tensor:
        """The logits (rows, vocabulary) after one token per reply, their keys and values appended."""
        return self._forward(torch.tensor(list(tokens)).view(-1, 1))[:, 0]

    def _forward(self, ids: torch.Tensor) -> torch.Tensor:
        """The logits (rows, n, vocabulary) after each of the n tokens of every row of `ids` (rows, n)."""
        inner, (rows, n), at = self.model.model, ids.shape, self.length
        x = inner.embed_tokens.weight[ids]  # (rows, n, hidden)
        cos, sin = self._rotation(at, n)
        # token j sees the keys up to its own position at + j: the later guesses are masked out; a row sees none of
        # its padding
        future = None if n == 1 else torch.ones(n, at + n, dtype=torch.bool).triu(at + 1)
        padding = None if self.pad is None else (torch.arange(at + n) < self.pad.unsqueeze(1))  # (rows, at + n)
        for keys, values, layer, qkv in zip(self.keys, self.values, inner.layers, self.fused_qkv, strict=True):
            attention = layer.self_attn
            h = _rms_norm(x, layer.input_layernorm)
            query, key, value = self._projections(attention, qkv, h, rows, n)
            rotated = _rotate(torch.cat((query, key), dim=2), cos, sin)  # q and k heads alike: one rotation
            keys[:, :, at: at + n] = rotated[:, :, self.heads:].transpose(1, 2)
            values[:, :, at: at + n] = value.transpose(1, 2)
            seen = slice(0, at + n)  # the positions so far, these tokens' included
            mixed = self._attend(rotated[:, :, : self.heads], keys[:, :, seen], values[:, :, seen], future,
                                 padding, attention.scaling)
            x = x + attention.o_proj(mixed)
            x = x + layer.mlp(_rms_norm(x, layer.post_attention_layernorm))
        self.length += n
        return self.model.lm_head(_rms_norm(x, inner.norm))

    def forget(self, count: int) -> None:
        """Drop the last `count` positions' keys and values (guesses that turned out wrong): the next step
        overwrites them."""
        self.length -= count

    def _attend(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, future: torch.Tensor | None,
                padding: torch.Tensor | None, scaling: float) -> torch.Tensor:
        """Attention of each row's n queries (rows, n, heads, head_dim) over its `keys` and `values` (rows, kv_heads,
        positions, head_dim), `future` (n, positions) masking what each query may not see and `padding` (rows,
        positions) what its row may not: (rows, n, heads * head_dim). Grouped query attention: each key/value head
        serves heads / kv_heads query heads."""
        rows, n, group = query.shape[0], query.shape[1], self.heads // self.kv_heads
        grouped = query.view(rows, n, self.kv_heads, group, self.head_dim).permute(0, 2, 3, 1, 4).reshape(
            rows, self.kv_heads, group * n, self.head_dim)
        scores = grouped @ keys.transpose(2, 3) * scaling  # (rows, kv_heads, group * n, positions)
        if future is not None:
            scores = scores.masked_fill(future.repeat(group, 1), float("-inf"))
        if padding is not None:
            scores = scores.masked_fill(padding[:, None, None, :], float("-inf"))
        mixed = torch.softmax(scores, dim=-1) @ values  # (rows, kv_heads, group * n, head_dim)
        return mixed.view(rows, self.kv_heads, group, n, self.head_dim).permute(0, 3, 1, 2, 4).reshape(
            rows, n, self.heads * self.head_dim)

    def _projections(self, attention: Any, qkv: QuantisedDecode | None, h: torch.Tensor, rows: int,
                     n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (rows, n, heads, head_dim), k and v (rows, n, kv_heads, head_dim) of `h` (rows, n, hidden): one 4-bit
        product when the layer has it (each output is the same dot product as in its own projection's: the same
        bits), else three."""
        if qkv is not None:
            both = qkv(h).view(rows, n, self.heads + 2 * self.kv_heads, self.head_dim)
            return both.split([self.heads, self.kv_heads, self.kv_heads], dim=2)
        return (attention.q_proj(h).view(rows, n, self.heads, self.head_dim),
                attention.k_proj(h).view(rows, n, self.kv_heads, self.head_dim),
                attention.v_proj(h).view(rows, n, self.kv_heads, self.head_dim))

    def _rotation(self, position: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of the rotary embedding at indices `position` .. + n - 1, as the model's rotary module
        computes: (n, 1, head_dim), or (rows, n, 1, head_dim) with padding (each row's positions less its own)."""
        index = torch.arange(position, position + n, dtype=torch.float32)
        at = index.view(n, 1) if self.pad is None else (index - self.pad.unsqueeze(1)).unsqueeze(-1)  # (., n, 1)
        freqs = at * self.inv_freq
        angles = torch.cat((freqs, freqs), dim=-1).unsqueeze(-2)
        return angles.cos() * self.rope_scale, angles.sin() * self.rope_scale


def _fused_qkv(model: Any) -> list[QuantisedDecode | None]:
    """Per layer of `model`, its q, k and v projections stacked into one 4-bit product (their adapters beside it),
    or None for a layer whose three are not all read from 4-bit blocks; made once per model."""
    with _LOCK:
        if model not in _FUSED_QKV:
            fused: list[QuantisedDecode | None] = []
            for layer in model.model.layers:
                parts = [getattr(getattr(layer.self_attn, name, None), "decode", None)
                         for name in ("q_proj", "k_proj", "v_proj")]
                fused.append(QuantisedDecode.stacked(parts) if all(p is not None for p in parts) else None)
            _FUSED_QKV[model] = fused
        return _FUSED_QKV[model]


def _layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer of a transformers DynamicCache (its layout since transformers 5, and before)."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (rows, n, heads, head_dim) at n positions, rotated: x cos + rotate_half(x) sin (each head on its own)."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def _rms_norm(x: torch.Tensor, norm: Any) -> torch.Tensor:
    """The model's RMSNorm in float32: weight * x / sqrt(mean(x^2) + eps)."""
    return norm.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon))
