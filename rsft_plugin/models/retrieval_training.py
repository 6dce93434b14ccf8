"""Fine-tuning of the retrieval kind: a copy of the model trained on accepted (prompt, answer) pairs.

Pairs arrive with candidate keys (answer ids); they are mapped to bank indices here, the only place that needs
them (`index_pairs`).

Loss: cross-entropy of softmax(cosine / train_temperature) over the whole bank with the accepted answer as the
target; the prompt's rejected candidates are hard negatives whose logits get an extra `hard_negative_margin`,
so the model must beat them by that much. Only the top `trainable_layers` transformer layers learn.

Speed on 2 CPU cores: the answer side is encoded once per epoch without gradients (not every step), so a step
costs one forward/backward pass over the batch's prompts only; the frozen layers keep no activations for
backward. The bank is encoded once per set of weights (the same weights give the same embeddings): the live
model's embeddings start the first epoch, and the validation's (after an epoch) start the next one and become
the kept epoch's model's. Early stopping watches a validation split of the accepted pairs (`finetune.stop_on`:
its loss, or how many of them rank their answer first) and picks the number of epochs; then, with
`finetune.refit`, a fresh copy trains that many epochs on every pair (`finetune_retrieval`).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..answer_bank import AnswerBank
from ..config import FinetuneConfig, ModelConfig
from ..faults import checkpoint
from .base import FinetuneResult, Progress, TrainingPair, no_progress
from .encoder import embed, trainable_state


class EncoderModel(Protocol):
    """What training uses of a retrieval model: its encoder, bank, settings and bank embeddings (and its
    constructor)."""

    encoder: torch.nn.Module
    bank: AnswerBank
    config: ModelConfig
    answer_embeddings: torch.Tensor  # (A, d): the bank as `encoder` embeds it


@dataclass(frozen=True)
class IndexedPair:
    """A training pair as the retrieval loss needs it: positions in the answer bank."""

    prompt: str
    answer_index: int  # the accepted answer's index in the bank
    hard_negatives: tuple[int, ...]  # rejected candidates of the same prompt


def index_pairs(pairs: list[TrainingPair], bank: AnswerBank) -> list[IndexedPair]:
    """Map the pairs' candidate keys (answer ids) to bank indices; hard negatives in index order."""
    return [IndexedPair(p.prompt, bank.index_of(p.target_key),
                        tuple(sorted(bank.index_of(key) for key in p.negative_keys))) for p in pairs]


def finetune_retrieval(live: EncoderModel, pairs: list[TrainingPair], config: FinetuneConfig,
                       progress: Progress = no_progress, show_bar: bool = True) -> FinetuneResult:
    """Train a copy of `live` on `pairs`; `live` itself is never modified.

    Early stopping on the validation split picks the number of epochs. With `finetune.refit` a second copy
    of `live` then trains that many epochs on every pair, the validation ones too, and is the result: a round's
    first questions are few, and the split alone kept 15 % of them out of the weights.
    """
    indexed = index_pairs(pairs, live.bank)
    train, val = _split(indexed, config.val_fraction, config.seed)
    refit = config.refit and bool(val)
    chosen = _train(live, train, val, config, progress if not refit else _first_half(progress), show_bar)
    if not refit:
        return chosen
    again = _train(live, indexed, [], config, _second_half(progress), show_bar, epochs=chosen.best_epoch)
    return FinetuneResult(again.model, chosen.epochs_run + again.epochs_run, chosen.best_epoch,
                          chosen.best_val_loss, len(indexed), len(val), again.examples_per_second,
                          chosen.history, threads=again.threads, refit_epochs=again.epochs_run)


def _first_half(progress: Progress) -> Progress:
    return lambda stage, fraction, message: progress(stage, fraction / 2, message)


def _second_half(progress: Progress) -> Progress:
    return lambda stage, fraction, message: progress(stage, 0.5 + fraction / 2, f"on every pair: {message}")


def _train(live: EncoderModel, train: list[IndexedPair], val: list[IndexedPair], config: FinetuneConfig,
           progress: Progress, show_bar: bool, epochs: int | None = None) -> FinetuneResult:
    """Train a copy of `live` on `train`. Without `epochs`: up to `max_epochs`, stopping early on `val` (the
    training pairs when empty; `config.stop_on` says what counts as better) and keeping the best epoch's weights;
    with it: exactly that many epochs, keeping the last."""
    encoder, trainable, optimizer = trainable_copy(live, config)
    answer_texts = [a.text for a in live.bank.answers]
    rng = np.random.default_rng(config.seed)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    fixed = epochs is not None  # a fixed count: no validation, the last epoch's weights are kept
    n_epochs = epochs if fixed else config.max_epochs
    total_steps = steps_per_epoch * n_epochs
    best_loss, best_accuracy, best_epoch, best_state, best_answers, history = math.inf, -1.0, 0, None, None, []
    stale, seen, train_seconds = 0, 0, 0.0
    bar = tqdm(total=total_steps, desc="fine-tune", unit="step", disable=not show_bar, leave=False)
    encoded = live.answer_embeddings  # the bank as encoded by the weights the next epoch starts from
    for epoch in range(1, n_epochs + 1):
        if encoded is None:  # fixed epochs validate nothing: the bank is encoded here
            encoded = embed(encoder, answer_texts, live.config.max_query_chars)
        answers = encoded.clone()  # (A, d), out of inference mode so autograd may save it
        encoded = None
        started = time.perf_counter()
        encoder.train()
        epoch_loss = 0.0
        for batch in batches(train, config.batch_size, rng):
            loss = pair_loss(encoder, batch, answers, config, live.config.max_query_chars)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            checkpoint("finetune:step")
            epoch_loss += loss.item() * len(batch)
            seen += len(batch)
            bar.update(1)
            progress("finetune", min(1.0, bar.n / total_steps), f"epoch {epoch}, loss {loss.item():.3f}")
        encoder.eval()
        train_seconds += time.perf_counter() - started
        if fixed:
            history.append({"epoch": epoch, "train_loss": epoch_loss / max(1, len(train))})
            continue
        encoded = embed(encoder, answer_texts, live.config.max_query_chars)
        val_loss, val_accuracy = _validation(encoder, val or train, encoded, config, live.config.max_query_chars)
        history.append({"epoch": epoch, "train_loss": epoch_loss / max(1, len(train)), "val_loss": val_loss,
                        "val_accuracy": val_accuracy})
        if _better(config.stop_on, val_loss, val_accuracy, best_loss, best_accuracy):
            best_loss, best_accuracy, best_epoch, stale = val_loss, val_accuracy, epoch, 0
            best_state, best_answers = {k: v.detach().clone() for k, v in trainable.items()}, encoded
        else:
            stale += 1
            if stale >= config.patience:
                break
    bar.close()
    if fixed:
        best_epoch = n_epochs
    with torch.no_grad():
        for name, parameter in trainable.items():
            if not fixed:
                parameter.copy_(best_state[name])
            parameter.requires_grad_(False)
    if config.interpolate < 1:
        best_answers = _part_of_the_step(live, encoder, trainable, config.interpolate)
    model = type(live)(encoder, live.bank, live.config, answer_embeddings=best_answers)
    return FinetuneResult(model, len(history), best_epoch, best_loss, len(train), len(val),
                          seen / train_seconds if train_seconds else 0.0, history, threads=torch.get_num_threads())


def _part_of_the_step(live: EncoderModel, encoder: torch.nn.Module, trainable: dict[str, torch.Tensor],
                      share: float) -> torch.Tensor:
    """Move the tuned `trainable` weights back to live + share * (tuned - live) (`finetune.interpolate`), in place,
    and return the bank as the result encodes it."""
    start = trainable_state(live.encoder, live.config.trainable_layers)
    with torch.no_grad():
        for name, parameter in trainable.items():
            parameter.copy_(start[name] + share * (parameter - start[name]))
    return embed(encoder, [a.text for a in live.bank.answers], live.config.max_query_chars)


def trainable_copy(live: EncoderModel, config: FinetuneConfig
                   ) -> tuple[torch.nn.Module, dict[str, torch.Tensor], torch.optim.Optimizer]:
    """A copy of `live`'s encoder whose top `trainable_layers` layers learn, and their optimiser."""
    torch.manual_seed(config.seed)
    encoder = copy.deepcopy(live.encoder)
    trainable = trainable_state(encoder, live.config.trainable_layers)
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    for parameter in trainable.values():
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(list(trainable.values()), lr=config.learning_rate, weight_decay=0.01)
    return encoder, trainable, optimizer


def encode_for_training(encoder, texts: list[str], max_chars: int) -> torch.Tensor:
    """Unit-length embeddings (N, d) with gradients through the trainable layers."""
    prepare = getattr(encoder, "preprocess", None) or encoder.tokenize  # `tokenize` is deprecated in ST 6
    return F.normalize(encoder(prepare([t[:max_chars] for t in texts]))["sentence_embedding"], dim=-1)


def pair_loss(encoder, batch: list[IndexedPair], answers: torch.Tensor, config: FinetuneConfig,
              max_chars: int) -> torch.Tensor:
    """Cross-entropy over the bank `answers` (A, d) with hard-negative margins, for one batch of pairs."""
    queries = encode_for_training(encoder, [p.prompt for p in batch], max_chars)  # (B, d)
    return _loss_from_logits(queries @ answers.T / config.train_temperature, batch, config)


def _loss_from_logits(logits: torch.Tensor, batch: list[IndexedPair], config: FinetuneConfig) -> torch.Tensor:
    margins = torch.zeros_like(logits)
    for row, pair in enumerate(batch):
        if pair.hard_negatives:
            margins[row, list(pair.hard_negatives)] = config.hard_negative_margin / config.train_temperature
    return F.cross_entropy(logits + margins, _targets(batch))


def _targets(batch: list[IndexedPair]) -> torch.Tensor:
    return torch.tensor([p.answer_index for p in batch])


def _better(stop_on: str, loss: float, accuracy: float, best_loss: float, best_accuracy: float) -> bool:
    """Whether an epoch's validation beats the best so far. "accuracy": more validation pairs ranked first, a
    lower loss breaking ties — a wrongly accepted pair's loss can grow while the model learns the rest, and then
    the mean loss turns up before the accuracy does (on the benchmark's rounds both mostly agree)."""
    if stop_on == "accuracy" and accuracy != best_accuracy:
        return accuracy > best_accuracy
    return loss < best_loss - 1e-4


def _validation(encoder, pairs: list[IndexedPair], answers: torch.Tensor, config: FinetuneConfig,
                max_chars: int) -> tuple[float, float]:
    """The loss over `pairs` against the bank `answers` (A, d) as this encoder embeds it, and the share of the
    pairs whose accepted answer the model ranks first."""
    total_loss, right = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(pairs), 256):
            batch = pairs[start:start + 256]
            queries = encode_for_training(encoder, [p.prompt for p in batch], max_chars)
            logits = queries @ answers.T / config.train_temperature
            total_loss += _loss_from_logits(logits, batch, config).item() * len(batch)
            right += int((logits.argmax(dim=1) == _targets(batch)).sum())
    return total_loss / len(pairs), right / len(pairs)


def _split(pairs: list[IndexedPair], fraction: float, seed: int) -> tuple[list[IndexedPair], list[IndexedPair]]:
    """Split by prompt, so one prompt's pairs never sit on both sides."""
    prompts = sorted({p.prompt for p in pairs})
    rng = np.random.default_rng(seed)
    rng.shuffle(prompts)
    n_val = int(len(prompts) * fraction) if len(prompts) >= 5 else 0
    val_prompts = set(prompts[:n_val])
    return [p for p in pairs if p.prompt not in val_prompts], [p for p in pairs if p.prompt in val_prompts]


def batches(pairs: list[IndexedPair], size: int, rng: np.random.Generator) -> list[list[IndexedPair]]:
    """The pairs in random order, cut into batches of `size`."""
    order = rng.permutation(len(pairs))
    return [[pairs[i] for i in order[start:start + size]] for start in range(0, len(pairs), size)]
