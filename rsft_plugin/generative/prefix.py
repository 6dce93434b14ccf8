"""The key/value cache of the writer's fixed system prefix: read once per model, copied into every call.

Every prompt of a writer starts with the same tokens: the chat template's system turn up to "Answers:\\n" (the shop's
name and the rule). Reading them is ~70 of a ~220-token prompt's rows, so each reply and each sampled prompt
starts from their keys and values instead, computed once per model (the inference copy: a LoRA adapter changes
the keys and values, so a cache belongs to the exact model that serves) and per prefix (the shop's name is a
setting), lazily, under a lock (the action server writes replies in several threads).

The cached tensors are never handed out: `PrefixCache.fresh` gives each call its own deep copy of the cache, which
generation then extends and repeats per row as usual (a copy of ~70 tokens' keys and values: ~3 MB, < 1 ms).

Numerics: the prompt's remaining rows attend to the same keys and values, so logits agree with a full prefill to
float rounding (the products run over fewer rows, summed in another blocking order); tests check greedy tokens,
sampled tokens and log q against the full prefill.

Imported by the writer only when a model runs (this module imports torch).
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

_LOCK = threading.Lock()
# model -> prefix token ids -> its cache; weak, so a dropped inference copy frees its prefixes
_PREFIXES: weakref.WeakKeyDictionary[Any, dict[tuple[int, ...], PrefixCache]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, eq=False)  # compared by identity: it holds tensors
class PrefixCache:
    """The key/value cache of `ids` under one model, as the model's forward returned it (never extended itself)."""

    ids: tuple[int, ...]
    cache: Any  # a transformers Cache (DynamicCache), one row

    def starts(self, prompt: Sequence[int]) -> bool:
        """Whether `prompt` begins with exactly these tokens and has at least one more (generation needs a row to
        read the next token's logits from)."""
        return len(prompt) > len(self.ids) and tuple(prompt[: len(self.ids)]) == self.ids

    def fresh(self) -> Any:
        """A copy of the cache for one call: whatever the call appends, repeats or crops changes the copy only."""
        return copy.deepcopy(self.cache)


def prefix_cache(model: Any, ids: Sequence[int]) -> PrefixCache | None:
    """The cache of `ids` under `model`, read on first use and kept while the model lives; None for empty `ids`."""
    key = tuple(ids)
    if not key:
        return None
    with _LOCK:  # concurrent first replies read the prefix once; later lookups wait only for the dict
        per_model = _PREFIXES.setdefault(model, {})
        if key not in per_model:
            per_model[key] = _read(model, key)
        return per_model[key]


def _read(model: Any, ids: tuple[int, ...]) -> PrefixCache:
    with torch.inference_mode():
        # the decoder alone: the prefix's logits are not needed
        cache = model.get_decoder()(input_ids=torch.tensor([ids]), use_cache=True).past_key_values
    return PrefixCache(ids, cache)
