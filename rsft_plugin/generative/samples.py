"""What sampling returns: the replies drawn for one prompt (`SampledReply`), made from a decode's tensors; which of
a round's prompts share a decode pass (`decode_passes`); and the draws by transformers' `generate` for a model the
writer's own loop (decoding.py) does not compute (`generate_samples`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .cache_api import with_cache


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


def generate_samples(model: Any, job: Any, cache: Any, end_id: int, pad_id: int) -> tuple[Any, Any, Any]:
    """A decoding.DecodeJob's draws by `generate`: tokens (k, T), log q and log p (k, T) each; drawn with the global
    RNG set to the job's generator's state (and left as it was). `cache` holds the prompt but its last token, once per
    row (the writer's `_shared_prefix_cache`), or is None."""
    import math
    import time

    import torch

    from .batches import chosen_logprobs

    prompt, k = list(job.prompt), job.rows
    left = None if job.deadline == math.inf else max(job.deadline - time.monotonic(), 1e-3)
    ids = torch.tensor([prompt]).repeat(k, 1)  # (k, P)
    with torch.random.fork_rng(devices=[]):
        torch.set_rng_state(job.generator.get_state())
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), **with_cache(cache), do_sample=True,
            temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=job.budget, max_time=left,
            eos_token_id=end_id, pad_token_id=pad_id, return_dict_in_generate=True,
            output_scores=True, output_logits=True, logits_processor=job.processors)
    new = out.sequences[:, len(prompt):]  # (k, T)
    steps = new.shape[1]
    return (new, chosen_logprobs(torch.stack(out.scores[:steps], dim=1), new),  # under q
            chosen_logprobs(torch.stack(out.logits[:steps], dim=1), new))  # untempered
