"""Settings of the writer and its LoRA fine-tune, as dataclasses in the style of rsft_plugin/config/.

Kept here (no torch) until they become the `generative:` section of rsft.yml; every field has help text and is
validated in `__post_init__`. A version saves its WriterSettings in writer.json, so it can be rebuilt exactly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..config.fields import check as check_setting
from ..errors import ConfigError


def _help(text: str, default: Any) -> Any:
    if isinstance(default, list | tuple):
        return field(default_factory=lambda: tuple(default), metadata={"help": text})
    return field(default=default, metadata={"help": text})


def _check(condition: bool, key: str, message: str) -> None:
    check_setting(condition, "generative", key, message)


@dataclass(frozen=True)
class WriterSettings:
    """How the writer turns a question and its grounding answers into a reply."""

    shop_name: str = _help("The shop the assistant speaks for (in the system prompt).", "Northwind Goods")
    grounding_answers: int = _help("How many top bank answers the writer sees for a question.", 2)
    max_new_tokens: int = _help("Longest reply, in tokens.", 48)
    time_limit_seconds: float = _help("A reply not finished by then is replaced by the grounding answer.", 5.0)
    guard_faithfulness: bool = _help(
        "Serving: a reply stating an amount, duration, URL, email or phone number that its grounding answers do not "
        "state is replaced by the top grounding answer (sampling for training is never guarded).", True)
    max_prompt_tokens: int = _help("Longer prompts keep their end (the question) and lose grounding text.", 640)
    temperature: float = _help("Sampling temperature of the proposal q when a round samples replies.", 0.8)
    top_p: float = _help("Nucleus sampling: smallest token set with this much probability.", 0.95)
    threads: int = _help("torch threads while the writer runs (0: torch's default). On a shared 2-core machine one "
                         "thread is several times faster than two (OpenMP oversubscription).", 1)
    lora_r: int = _help("LoRA rank.", 8)
    lora_alpha: int = _help("LoRA scale numerator (scale = alpha / r).", 16)
    lora_dropout: float = _help("Dropout on the LoRA branch while training.", 0.05)
    lora_targets: tuple[str, ...] = _help("Modules that get LoRA adapters.", ("q_proj", "v_proj"))

    def __post_init__(self) -> None:
        _check(bool(self.shop_name.strip()), "shop_name", "must not be empty")
        _check(1 <= self.grounding_answers <= 5, "grounding_answers", "must be between 1 and 5")
        _check(1 <= self.max_new_tokens <= 512, "max_new_tokens", "must be between 1 and 512")
        _check(self.time_limit_seconds > 0, "time_limit_seconds", "must be > 0")
        _check(64 <= self.max_prompt_tokens <= 4096, "max_prompt_tokens", "must be between 64 and 4096")
        _check(self.temperature > 0, "temperature", "must be > 0")
        _check(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        _check(0 <= self.threads <= 256, "threads", "must be between 0 and 256")
        _check(1 <= self.lora_r <= 256, "lora_r", "must be between 1 and 256")
        _check(self.lora_alpha >= 1, "lora_alpha", "must be >= 1")
        _check(0 <= self.lora_dropout < 1, "lora_dropout", "must be in [0, 1)")
        _check(bool(self.lora_targets), "lora_targets", "name at least one module")

    def to_json(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record["lora_targets"] = list(self.lora_targets)
        return record

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> WriterSettings:
        """Rebuild from writer.json; unknown keys are an error naming the valid ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ConfigError(f"generative: unknown key(s) {unknown}; valid keys are {sorted(names)}")
        values = dict(raw)
        if "lora_targets" in values:
            values["lora_targets"] = tuple(values["lora_targets"])
        return cls(**values)


@dataclass(frozen=True)
class LoraTraining:
    """One LoRA fine-tune of the writer on accepted (prompt, reply) pairs."""

    learning_rate: float = _help("AdamW learning rate of the adapter weights.", 5e-4)
    batch_size: int = _help("Pairs per step.", 8)
    max_epochs: int = _help("Upper bound on epochs.", 3)
    patience: int = _help("Stop after this many epochs without a better validation loss.", 1)
    val_fraction: float = _help("Share of pairs held out for early stopping (at least one when >= 2 pairs).", 0.15)
    seed: int = _help("Seed of the adapter's initialisation, shuffling and the validation split.", 0)
    max_seconds: float = _help("Stop after the epoch that passes this wall time (0: no limit).", 0.0)

    def __post_init__(self) -> None:
        _check(0 < self.learning_rate < 1, "learning_rate", "must be in (0, 1)")
        _check(self.batch_size >= 1, "batch_size", "must be >= 1")
        _check(self.max_epochs >= 1, "max_epochs", "must be >= 1")
        _check(self.patience >= 1, "patience", "must be >= 1")
        _check(0 <= self.val_fraction < 1, "val_fraction", "must be in [0, 1)")
        _check(self.max_seconds >= 0, "max_seconds", "must be >= 0")

    @classmethod
    def from_finetune_config(cls, config: Any, **overrides: Any) -> LoraTraining:
        """Take learning rate, batch size, epochs, patience, validation share and seed from a FinetuneConfig."""
        keys = ("learning_rate", "batch_size", "max_epochs", "patience", "val_fraction", "seed")
        values = {k: getattr(config, k) for k in keys if hasattr(config, k)}
        return cls(**{**values, **overrides})
