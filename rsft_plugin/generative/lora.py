"""LoRA fine-tuning of the writer on accepted (prompt, reply) pairs, and saving / loading a writer's adapter.

The loss is the writer's cross-entropy on the reply tokens only (the end-of-turn token included; the system
prompt, the grounding answers and the question are context, labelled -100). A round accepts several replies to one
prompt, and the prompt (~220 tokens) is ~5x longer than a reply: each batch reads a prompt's tokens once and its
replies continue from that prompt's keys and values (`_batch_loss`), exactly as if each reply had been read with its
prompt (to float rounding; tests/generative/test_lora.py). So batches are made of whole prompts' replies, shuffled
by prompt each epoch. Training works on a COPY: the copy shares the frozen base weights with the live writer (they
are never written) and gets its own adapter tensors, so the live adapter is untouched whatever happens. Early
stopping keeps the epoch with the best validation loss.

A saved writer is a folder with `writer.json` (settings, the base checkpoint's sha256, adapter or none) and, when
it has one, peft's `adapter_model.safetensors` + `adapter_config.json`. The base is never copied.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelLoadError
from .cache_api import cache_of, with_cache
from .checkpoint import find_checkpoint, load_base
from .precision import training_arithmetic, training_precision
from .settings import LoraTraining, WriterSettings
from .writer import Writer

WRITER_FILE = "writer.json"
WRITER_FORMAT = 1

# progress(stage, fraction in [0, 1], message), as rounds report it
Progress = Callable[[str, float, str], None]
# peft (0.21, the newest) reads `model.is_gradient_checkpointing` whenever it wraps a model, which transformers 5.x
# deprecates with a FutureWarning: one in every round's log and at every load of a version with an adapter, about a
# property none of our code uses
PEFT_WRAP_NOTICE = r"`is_gradient_checkpointing` is deprecated"


def _no_progress(stage: str, fraction: float, message: str) -> None:
    """Ignore progress."""


@dataclass(frozen=True)
class WriterExample:
    """One accepted pair: the prompt (question + the grounding answers it was written from) and the reply."""

    question: str
    grounding: tuple[str, ...]
    reply: str


@dataclass
class LoraResult:
    writer: Writer  # the trained copy (adapter at its best epoch)
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    train_pairs: int
    val_pairs: int
    steps: int
    seconds: float
    tokens_per_second: float  # the training examples' tokens (prompt + reply) per second of training
    trainable_parameters: int
    history: list[dict[str, float]] = field(default_factory=list)
    precision: str = "float32"  # what the passes ran in: `training.precision` resolved for this CPU
    threads: int = 0  # torch threads the passes ran with (the writer's `threads`; a round's `round_threads`)


def finetune_writer(writer: Writer, examples: Sequence[WriterExample], training: LoraTraining | None = None,
                    progress: Progress = _no_progress, show_bar: bool = True) -> LoraResult:
    """Train a LoRA adapter (new, or continuing the writer's own) on `examples`; `writer` is never modified.

    Raises:
        ValueError: no examples.
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    training = training or LoraTraining()
    if not examples:
        raise ValueError("fine-tuning the writer needs at least one accepted pair")
    rng = np.random.default_rng(training.seed)
    order = rng.permutation(len(examples))
    n_val = 0
    if training.val_fraction > 0 and len(examples) >= 2:
        n_val = min(len(examples) - 1, max(1, round(training.val_fraction * len(examples))))
    val_rows = [writer.example_ids(*_fields(examples[i])) for i in order[:n_val]]
    train_rows = [writer.example_ids(*_fields(examples[i])) for i in order[n_val:]]
    train_groups = _by_prompt(train_rows)

    precision = training_precision(training.precision)
    trained = _trainable_copy(writer, seed=training.seed)
    model = trained.model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=training.learning_rate, weight_decay=0.0)
    # packing whole prompts makes an epoch's batch count depend on its order: the bar's total is an estimate
    estimated_batches = len(_batches(train_groups, training.batch_size, np.random.default_rng(0)))
    bar = tqdm(total=training.max_epochs * estimated_batches, desc="fine-tune writer", unit="step",
               disable=not show_bar, leave=False)
    best_loss, best_epoch, best_state, stale = math.inf, 0, _adapter_state(model), 0
    history: list[dict[str, float]] = []
    tokens = steps = 0
    started = time.monotonic()
    with writer.threads(training=True), training_arithmetic(model, precision):
        threads = torch.get_num_threads()
        for epoch in range(1, training.max_epochs + 1):
            model.train()
            epoch_loss = 0.0
            batches = _batches(train_groups, training.batch_size, rng)
            for b, batch in enumerate(batches):
                loss, n_tokens = _batch_loss(model, batch, writer.pad_id, precision)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                epoch_loss += loss.item()
                tokens += n_tokens
                steps += 1
                rate = tokens / max(time.monotonic() - started, 1e-9)
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{rate:.0f}")
                progress("finetune", (epoch - 1 + (b + 1) / len(batches)) / training.max_epochs,
                         f"epoch {epoch} step {b + 1}/{len(batches)} loss {loss.item():.3f} {rate:.0f} tok/s")
            train_loss = epoch_loss / len(batches)
            val_loss = (_eval_loss(model, val_rows, writer.pad_id, training.batch_size, precision) if val_rows
                        else train_loss)
            history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
            if val_loss < best_loss - 1e-6:
                best_loss, best_epoch, best_state, stale = val_loss, epoch, _adapter_state(model), 0
            else:
                stale += 1
            out_of_time = training.max_seconds and time.monotonic() - started > training.max_seconds
            if stale >= training.patience or out_of_time:
                break
    bar.close()
    seconds = time.monotonic() - started
    _load_adapter_state(model, best_state)
    model.eval()
    model.requires_grad_(False)
    return LoraResult(writer=trained, epochs_run=len(history), best_epoch=best_epoch, best_val_loss=best_loss,
                      train_pairs=len(train_rows), val_pairs=len(val_rows), steps=steps, seconds=seconds,
                      tokens_per_second=tokens / max(seconds, 1e-9),
                      trainable_parameters=sum(p.numel() for p in params), history=history, precision=precision,
                      threads=threads)


def save_writer(writer: Writer, directory: str | Path) -> dict[str, Any]:
    """Write the writer's adapter (if any) and writer.json into `directory`; returns what writer.json holds."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    has_adapter = _is_peft(writer.model)
    if has_adapter:
        writer.model.save_pretrained(directory, save_embedding_layers=False)
        (directory / "README.md").unlink(missing_ok=True)  # peft's model card template: nothing of ours in it
    if writer.base is None:
        raise ModelLoadError("a writer built without a base checkpoint cannot be saved (nothing to reference)")
    record = {"format": WRITER_FORMAT, "base_sha256": writer.base.sha256, "base_name": writer.base.name,
              "adapter": has_adapter, "settings": writer.settings.to_json()}
    (directory / WRITER_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def load_writer(directory: str | Path, cache_root: str | Path, settings: WriterSettings | None = None) -> Writer:
    """Rebuild a saved writer: the base checkpoint by hash from `cache_root`, then its adapter.

    Args:
        settings: the configured settings (rsft.yml's `generative:`); they replace the saved ones except the LoRA
            structure that defines the adapter's weights (config/generative.WEIGHT_FIELDS), which the saved
            writer.json keeps.

    Raises:
        ModelLoadError: missing or damaged files, or a base that is neither cached nor convertible.
    """
    directory = Path(directory)
    try:
        record = json.loads((directory / WRITER_FILE).read_text(encoding="utf-8"))
        saved = WriterSettings.from_json(record["settings"])
        base_sha = record["base_sha256"]
    except (OSError, ValueError, KeyError, TypeError, ConfigError) as exc:
        raise ModelLoadError(f"{directory / WRITER_FILE} is missing or unreadable: {exc}") from exc
    checkpoint = find_checkpoint(cache_root, base_sha)
    model, tokenizer = load_base(checkpoint)
    if record.get("adapter"):
        from peft import PeftModel

        hide_peft_wrap_notice()
        try:
            model = PeftModel.from_pretrained(model, directory, is_trainable=False)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise ModelLoadError(f"{directory}: the adapter cannot be loaded: {exc}") from exc
        model.eval()
    writer = Writer(model, tokenizer, settings.keeping_weights_of(saved) if settings else saved, checkpoint)
    writer.prepare()  # the inference copy and the system prefix's cache now, not at a served version's first reply
    return writer


def hide_peft_wrap_notice() -> None:
    """Call just before peft wraps a model (`PEFT_WRAP_NOTICE`)."""
    # at call time, not import time, so that it holds whatever filters were set since (a test's "always" too);
    # filterwarnings drops an identical earlier entry, so calling it per wrap does not grow the filter list
    warnings.filterwarnings("ignore", message=PEFT_WRAP_NOTICE, category=FutureWarning)


def _fields(example: WriterExample) -> tuple[str, tuple[str, ...], str]:
    return example.question, example.grounding, example.reply


def _is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config")


def _trainable_copy(writer: Writer, seed: int) -> Writer:
    """A writer whose module tree and adapter are new, sharing the frozen base tensors with `writer`."""
    import torch

    frozen = {id(p): p for n, p in writer.model.named_parameters() if "lora_" not in n}
    model = copy.deepcopy(writer.model, memo=dict(frozen))
    if _is_peft(model):
        for name, param in model.named_parameters():
            param.requires_grad = "lora_" in name
    else:
        from peft import LoraConfig, get_peft_model

        s = writer.settings
        hide_peft_wrap_notice()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = get_peft_model(model, LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout,
                                                     target_modules=list(s.lora_targets), task_type="CAUSAL_LM"))
    return Writer(model, writer.tokenizer, writer.settings, writer.base)


Row = tuple[list[int], int]  # (prompt + reply + end-of-turn ids, prompt length): Writer.example_ids


def _by_prompt(rows: list[Row]) -> list[list[Row]]:
    """The rows grouped by their prompt's tokens (the replies a round accepted for one question and grounding)."""
    groups: dict[tuple[int, ...], list[Row]] = {}
    for row in rows:
        groups.setdefault(tuple(row[0][: row[1]]), []).append(row)
    return list(groups.values())


def _batches(groups: list[list[Row]], batch_size: int, rng: Any) -> list[list[list[Row]]]:
    """One epoch's batches: the groups (cut into pieces of at most `batch_size` replies) in `rng`'s order, packed
    into batches of at most `batch_size` replies."""
    pieces = [group[i: i + batch_size] for group in groups for i in range(0, len(group), batch_size)]
    batches: list[list[list[Row]]] = []
    size = 0
    for index in rng.permutation(len(pieces)):
        piece = pieces[index]
        if not batches or size + len(piece) > batch_size:
            batches.append([])
            size = 0
        batches[-1].append(piece)
        size += len(piece)
    return batches


def _batch_loss(model: Any, batch: list[list[Row]], pad_id: int, precision: str = "float32") -> tuple[Any, int]:
    """Mean cross-entropy over the batch's reply tokens, and the number of example tokens (prompt + reply) in it.

    Two forward passes: the batch's prompts (each but its last token, right-padded) once, then every reply
    continuing from its prompt's keys and values (selected per reply: gradients through the selection sum over a
    prompt's replies, as if each had read the prompt itself). A reply's input starts with its prompt's last token,
    which predicts the reply's first; its positions continue its own prompt's, and the padding between the two is
    masked. The vocabulary projection runs only where a reply token is predicted: logits over 49k tokens at every
    position would dominate memory. With `precision` "bfloat16" the passes run under autocast (the adapter's
    weights and gradients stay float32) and the loss is taken in float32.
    """
    import torch

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
        return _reply_loss(model, batch, pad_id)


def _reply_loss(model: Any, batch: list[list[Row]], pad_id: int) -> tuple[Any, int]:
    import torch

    from .batches import pad_batch

    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    contexts = [piece[0][0][: piece[0][1] - 1] for piece in batch]  # each prompt but its last token
    cache, context_mask = _read_contexts(causal_lm.model, contexts, pad_id)  # (G, ., C, .), (G, C)
    rows = [row for piece in batch for row in piece]
    owner = torch.tensor([g for g, piece in enumerate(batch) for _ in piece])  # each reply's prompt in the batch
    cache.batch_select_indices(owner)  # (n, ., C, .)
    tails = [(ids[prompt_len - 1:], 1) for ids, prompt_len in rows]  # the prompt's last token, the reply, the end
    tail_ids, labels = pad_batch(tails, pad_id)  # (n, S)
    mask = torch.cat([context_mask[owner], _length_mask(tails, tail_ids)], dim=1)  # (n, C + S)
    positions = torch.tensor([[prompt_len - 1 + t for t in range(tail_ids.shape[1])] for _, prompt_len in rows])
    hidden = causal_lm.model(input_ids=tail_ids, attention_mask=mask, position_ids=positions, **with_cache(cache),
                             use_cache=True).last_hidden_state  # (n, S, d)
    targets = labels[:, 1:]  # position t predicts token t+1
    where = targets != -100
    logits = causal_lm.lm_head(hidden[:, :-1][where])  # (R, V), R = reply tokens in the batch
    loss = torch.nn.functional.cross_entropy(logits.float(), targets[where])
    return loss, sum(len(ids) for ids, _ in rows)


def _read_contexts(decoder: Any, contexts: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    """The key/value cache of the contexts (G rows, each right-padded to the longest) and its attention mask.

    Every prompt starts with the writer's system text (~70 of a ~125-token prompt with one grounding answer), and
    the adapter changes its keys and values, so it is read with gradients each step; but only once a batch: the
    tokens all contexts start with are read as one row, repeated per context (gradients through the repeat sum
    over the contexts, as if each had read them), and each context's rest continues from there: ~20 % fewer tokens
    an epoch with two replies a prompt, less in a round, whose batches hold 2-4 prompts (docs/generative.md).
    """
    import torch

    from .batches import pad_batch

    shared = len(os.path.commonprefix(contexts))  # element by element: works on token lists as on strings
    cache = None
    if shared:
        cache = cache_of(decoder(input_ids=torch.tensor([contexts[0][:shared]]), use_cache=True))
        cache.batch_repeat_interleave(len(contexts))
    rests = [(context[shared:], 0) for context in contexts]
    width = max(len(rest) for rest, _ in rests)
    shared_mask = torch.ones((len(contexts), shared), dtype=torch.long)
    if not width:  # one context (or identical ones), read whole above
        return cache, shared_mask
    rest_ids, _ = pad_batch(rests, pad_id)  # (G, width)
    rest_mask = _length_mask(rests, rest_ids)
    mask = torch.cat([shared_mask, rest_mask], dim=1)
    positions = torch.arange(shared, shared + width).expand(len(contexts), width)
    cache = cache_of(decoder(input_ids=rest_ids, attention_mask=mask, position_ids=positions, **with_cache(cache),
                             use_cache=True))
    return cache, mask


def _eval_loss(model: Any, rows: list[Row], pad_id: int, batch_size: int, precision: str = "float32") -> float:
    """Reply-token-weighted mean cross-entropy over `rows`, in eval mode."""
    import numpy as np
    import torch

    model.eval()
    total = count = 0.0
    with torch.inference_mode():
        for batch in _batches(_by_prompt(rows), batch_size, np.random.default_rng(0)):
            loss, _ = _batch_loss(model, batch, pad_id, precision)
            n = sum(len(ids) - prompt_len for piece in batch for ids, prompt_len in piece)
            total += float(loss) * n
            count += n
    return total / max(count, 1)


def _length_mask(rows: list[Row], batch: Any) -> Any:
    import torch

    mask = torch.zeros_like(batch)
    for i, (ids, _) in enumerate(rows):
        mask[i, : len(ids)] = 1
    return mask


def _adapter_state(model: Any) -> dict[str, Any]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _load_adapter_state(model: Any, state: dict[str, Any]) -> None:
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
