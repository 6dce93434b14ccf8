"""The copy bias: a logits processor that keeps a small writer to the words of its grounding answers.

A 135M writer paraphrasing a bank answer drifts to another topic in a quarter to a third of its replies
(docs/generative.md, "Staying on the grounding"); raising the logits of the grounding's tokens keeps it close, and
counting how often the reply has used each keeps it from looping.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any


def grounding_token_counts(tokenizer: Any, grounding: Sequence[str]) -> dict[int, int]:
    """How often each token occurs in the grounding answers (a word read mid-sentence and at the start), special
    tokens excepted: how many times the copy bias raises it."""
    counts: Counter[int] = Counter()
    for text in grounding:
        clean = " ".join(text.split())
        mid = Counter(tokenizer(clean, add_special_tokens=False)["input_ids"])
        start = Counter(tokenizer(" " + clean, add_special_tokens=False)["input_ids"])
        counts.update(mid | start)
    for special in tokenizer.all_special_ids:
        counts.pop(special, None)
    return dict(counts)


def copy_bias_processor(counts: dict[int, int], bias: float, prompt_length: int) -> Any:
    """A logits processor adding `bias` to the score of every grounding token the reply has used fewer times than the
    grounding holds it. Raising a token once it is used up made a 135M writer loop ("We're sorry it arrived broken.
    We're sorry it arrived broken. ..."); counting lets it copy a phrase once and go on to the next.

    generate() runs it before temperature and top-p and returns the processed scores, from which `sample` takes
    log q: q stays exactly the distribution that drew the reply.
    """
    import torch
    from transformers import LogitsProcessor

    ids = torch.tensor(list(counts), dtype=torch.long)
    allowed = torch.tensor(list(counts.values()), dtype=torch.float32)

    class CopyBias(LogitsProcessor):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            written = input_ids[:, prompt_length:]  # (B, t)
            used = torch.zeros(scores.shape, dtype=torch.float32)  # (B, V)
            used.scatter_add_(1, written, torch.ones(written.shape, dtype=torch.float32))
            left = allowed.unsqueeze(0) > used[:, ids]  # (B, G)
            raised = scores.clone()
            raised[:, ids] += bias * left.to(scores.dtype)
            return raised

    return CopyBias()
