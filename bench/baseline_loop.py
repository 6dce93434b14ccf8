"""The straightforward fine-tuning loop the library's fine-tune stage is compared with.

Same model copy, same trainable layers, same optimiser, batch size, loss (cross-entropy over the whole bank at
`train_temperature`, hard-negative margins) and pairs as the retrieval kind's fine-tuning
(rsft_plugin.models.retrieval_training) — but written the obvious
way: every step encodes the answer bank again, with gradients, next to the batch's prompts. The library encodes
the bank once per epoch without gradients instead; this loop measures what that saves.
"""

from __future__ import annotations

import time

import numpy as np

from rsft_plugin.config import FinetuneConfig
from rsft_plugin.models.base import ResponsePolicy, TrainingPair
from rsft_plugin.models.retrieval_training import (
    batches,
    encode_for_training,
    index_pairs,
    pair_loss,
    trainable_copy,
)


def straightforward_examples_per_second(live: ResponsePolicy, pairs: list[TrainingPair], config: FinetuneConfig,
                                        max_steps: int) -> dict[str, float]:
    """Train a copy of `live` for at most `max_steps` steps (one pass over `pairs` at most); examples/s."""
    encoder, _trainable, optimizer = trainable_copy(live, config)
    answer_texts = [a.text for a in live.bank.answers]
    max_chars = live.config.max_query_chars
    encoder.train()
    seen, steps, losses = 0, 0, []
    started = time.perf_counter()
    indexed = index_pairs(pairs, live.bank)
    for batch in batches(indexed, config.batch_size, np.random.default_rng(config.seed))[:max_steps]:
        answers = encode_for_training(encoder, answer_texts, max_chars)  # (A, d), with gradients, every step
        loss = pair_loss(encoder, batch, answers, config, max_chars)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        seen += len(batch)
        steps += 1
    seconds = time.perf_counter() - started
    encoder.eval()
    return {"examples": seen, "steps": steps, "seconds": round(seconds, 3),
            "examples_per_second": seen / seconds if seconds else 0.0,
            "first_loss": losses[0] if losses else float("nan"), "last_loss": losses[-1] if losses else float("nan")}
