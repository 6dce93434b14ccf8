"""What sampling returns: the replies drawn for one prompt (`SampledReply`), made from a decode's tensors; and which
of a round's prompts share a decode pass (`decode_passes`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SampledReply:
    """One reply drawn from the writer's proposal q."""

    text: str
    token_ids: tuple[int, ...]  # the reply's tokens, end-of-turn token included when it finished
    logprob: float  # log q(reply | prompt) at the sampling temperature and top-p
    model_logprob: float  # log p(reply | prompt) under the untempered writer
    finished: bool  # ended with the end-of-turn token (else cut by max_new_tokens or the time limit)


def sampled_replies(tokenizer: Any, end_id: int, new: Any, q_logp: Any, p_logp: Any) -> list[SampledReply]:
    """The replies of one prompt's draws: tokens (k, T), log q and log p (k, T) each; a row's tokens count up to and
    including its first end-of-turn token (later ones are padding)."""
    import torch

    is_end = new == end_id
    ended_before = torch.cumsum(is_end.int(), dim=1) - is_end.int()  # (k, T)
    keep = ended_before == 0
    replies = []
    for row in range(new.shape[0]):
        tokens = new[row][keep[row]].tolist()
        finished = bool(is_end[row][keep[row]].any())
        text_ids = tokens[:-1] if finished else tokens
        replies.append(SampledReply(
            text=tokenizer.decode(text_ids, skip_special_tokens=True).strip(), token_ids=tuple(tokens),
            logprob=float(q_logp[row][keep[row]].sum()), model_logprob=float(p_logp[row][keep[row]].sum()),
            finished=finished))
    return replies


def decode_passes(rows: Sequence[int], most: int) -> list[range]:
    """Consecutive requests (`rows[i]` replies each) grouped into passes of at most `most` rows; a request of more
    rows is a pass of its own."""
    passes: list[range] = []
    for index, count in enumerate(rows):
        if passes and sum(rows[i] for i in passes[-1]) + count <= most:
            passes[-1] = range(passes[-1].start, index + 1)
        else:
            passes.append(range(index, index + 1))
    return passes
