"""How a transformers model takes and returns its key/value cache: one name for every call of ours.

transformers 5.x renamed the forward argument and the output field `past_key_values` to `cache`; 5.25 still takes
the old name but warns (a FutureWarning per call site, in every round's and server's log) that it goes away in
5.40. Older releases know only `past_key_values`. The name is read once from the Llama forward's signature (the
writer's architecture), so the same code runs on either side of the rename without a version table.

Torch-free at import: transformers is imported when the name is first asked for (a model is running by then).
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def cache_name() -> str:
    """`cache` where the installed transformers' Llama forward takes it, else `past_key_values`."""
    from transformers.models.llama.modeling_llama import LlamaModel

    return "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"


def with_cache(cache: Any) -> dict[str, Any]:
    """The keyword argument that hands `cache` (a transformers cache, or None) to a forward or `generate` call."""
    return {cache_name(): cache}


def cache_of(output: Any) -> Any:
    """The key/value cache a forward call returned (with use_cache=True)."""
    return getattr(output, cache_name())
