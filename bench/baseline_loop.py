"""The straightforward fine-tuning loop the library's fine-tune stage is compared with.

Same model copy, same trainable layers, same optimiser, batch size, loss (cross-entropy over the whole bank at
`train_temperature`, hard-negative margins) and pairs as rsft_plugin.stages.finetune — but written the obvious
way: every step encodes the answer bank again, with gradients, next to the batch's prompts. The library encodes
the bank once per epoch without gradients instead; this loop measures what that saves.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
import torch.nn.functional as F

from rsft_plugin.config import FinetuneConfig
from rsft_plugin.encoder import trainable_state
from rsft_plugin.model import ResponseModel
from rsft_plugin.stages.records import TrainingPair


def straightforward_examples_per_second(live: ResponseModel, pairs: list[TrainingPair], config: FinetuneConfig,
                                        max_steps: int) -> dict[str, float]:
    """Train a copy of `live` for at most `max_steps` steps (one pass over `pairs` at most); examples/s."""
    torch.manual_seed(config.seed)
    encoder = copy.deepcopy(live.encoder)
    trainable = trainable_state(encoder, live.config.trainable_layers)
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    for parameter in trainable.values():
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(list(trainable.values()), lr=config.learning_rate, weight_decay=0.01)
    answer_texts = [a.text[: live.config.max_query_chars] for a in live.bank.answers]
    tokenize = getattr(encoder, "preprocess", None) or encoder.tokenize
    order = np.random.default_rng(config.seed).permutation(len(pairs))
    batches = [[pairs[i] for i in order[s:s + config.batch_size]] for s in range(0, len(pairs), config.batch_size)]
    encoder.train()
    seen, steps, losses = 0, 0, []
    started = time.perf_counter()
    for batch in batches[:max_steps]:
        queries = F.normalize(encoder(tokenize([p.prompt[: live.config.max_query_chars] for p in batch]))
                              ["sentence_embedding"], dim=-1)  # (B, d)
        answers = F.normalize(encoder(tokenize(answer_texts))["sentence_embedding"], dim=-1)  # (A, d), every step
        logits = queries @ answers.T / config.train_temperature  # (B, A)
        margins = torch.zeros_like(logits)
        for row, pair in enumerate(batch):
            if pair.hard_negatives:
                margins[row, list(pair.hard_negatives)] = config.hard_negative_margin / config.train_temperature
        loss = F.cross_entropy(logits + margins, torch.tensor([p.answer_index for p in batch]))
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
