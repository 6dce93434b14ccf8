"""Key/value caches of the writer's prompt prefixes: the fixed system text, and the system turn with its answers.

Every prompt of a writer starts with the same tokens: the chat template's system turn up to "Answers:\\n" (the shop's
name and the rule). Reading them is ~70 of a ~150-token prompt's rows, so each reply and each sampled prompt
starts from their keys and values instead, computed once per model (the inference copy: a LoRA adapter changes
the keys and values, so a cache belongs to the exact model that serves) and per prefix (the shop's name is a
setting), lazily, under a lock (the action server writes replies in several threads).

The grounding answers come next, and a shop's customers ask about the same few topics again and again: the whole
system turn up to the customer's question (`grounding_head`) is the same for every question grounded on the same
answers. `grounding_cache` keeps the keys and values of the most recently used such heads per model (the writer's
`cached_groundings` setting), each read from the system prefix's cache; a reply whose head is kept reads only its
question (~15 rows instead of ~75: a 48-token reply ~0.25 s sooner on this machine, docs/generative.md). Each kept
head is ~6 MB (46 KB a token).

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
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .cache_api import cache_of, with_cache

_LOCK = threading.Lock()
# model -> prefix token ids -> its cache; weak, so a dropped inference copy frees its prefixes
_PREFIXES: weakref.WeakKeyDictionary[Any, dict[tuple[int, ...], PrefixCache]] = weakref.WeakKeyDictionary()
# model -> grounding head's token ids -> its cache, most recently used last
_HEADS: weakref.WeakKeyDictionary[Any, OrderedDict[tuple[int, ...], PrefixCache]] = weakref.WeakKeyDictionary()


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


def grounding_head(prompt: Sequence[int], turn_start: int) -> tuple[int, ...]:
    """The prompt's tokens before its last turn but one: the system turn (rule and grounding answers) up to where the
    customer's turn starts (`turn_start`: the chat template's start-of-turn token); () when it has fewer turns."""
    starts = [at for at, token in enumerate(prompt) if token == turn_start]
    return tuple(prompt[: starts[-2]]) if len(starts) >= 2 else ()


def grounding_cache(model: Any, system: PrefixCache, head: Sequence[int], keep: int) -> PrefixCache | None:
    """The cache of `head` (which extends `system`'s tokens) under `model`, read from `system`'s cache on first use
    and kept among the model's `keep` most recently used (the least recently used dropped first); None when `keep`
    is 0 or `head` does not extend `system`.

    A head is read outside the lock (a first reply on one topic does not hold up replies on others); two threads
    reading the same new head both read it, and the later one is kept.
    """
    key = tuple(head)
    if keep < 1 or len(key) <= len(system.ids) or key[: len(system.ids)] != system.ids:
        return None
    with _LOCK:
        kept = _HEADS.setdefault(model, OrderedDict())
        found = kept.get(key)
        if found is not None:
            kept.move_to_end(key)
            return found
    read = _read(model, key, system)
    with _LOCK:
        kept[key] = read
        while len(kept) > keep:
            kept.popitem(last=False)
    return read


def _read(model: Any, ids: tuple[int, ...], start: PrefixCache | None = None) -> PrefixCache:
    """The cache of `ids`, read whole or (`start`) from the cache of their first tokens."""
    offset = len(start.ids) if start is not None else 0
    with torch.inference_mode():
        # the decoder alone: the prefix's logits are not needed
        cache = cache_of(model.get_decoder()(input_ids=torch.tensor([ids[offset:]]), use_cache=True,
                                             **with_cache(start.fresh() if start is not None else None)))
    return PrefixCache(ids, cache)
