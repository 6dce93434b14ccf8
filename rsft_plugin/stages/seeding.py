"""Random choices of a round, seeded from what they are about — never from turn ids, row ids or the log's timing.

Turn ids are random UUIDs: the same conversations logged twice get different ids. A round therefore derives every
generator from the round's seed (`sample.seed`) and stable content (a question's text, a candidate's key), so the
same log content and config give the same round: the same kept-out split, replay, candidates and accept decisions.
"""

from __future__ import annotations

import hashlib

import numpy as np

_SEPARATOR = "\x1f"  # unit separator: cannot occur in cleaned text, so ("a", "bc") and ("ab", "c") differ


def content_seed(seed: int, purpose: str, *content: str) -> int:
    """A 64-bit integer from the round's seed, what it is for ("split", "sample", ...) and the content."""
    text = _SEPARATOR.join([str(seed), purpose, *content])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8], "big")


def content_rng(seed: int, purpose: str, *content: str) -> np.random.Generator:
    """A generator seeded by `content_seed`: the same content and seed draw the same numbers."""
    return np.random.default_rng(content_seed(seed, purpose, *content))


def content_share(seed: int, purpose: str, *content: str) -> float:
    """A number in [0, 1) that is uniform over contents and fixed for one content: a stable coin."""
    return content_seed(seed, purpose, *content) / 2**64
