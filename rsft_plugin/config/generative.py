"""The `generative:` section of rsft.yml: the writer's serving and sampling settings and its LoRA fine-tune.

Torch-free (the web server and `rsft config` read it). `WriterSettings` is what a saved writer records in its
writer.json; `GenerativeConfig` is the section: the same fields plus the LoRA training knobs that `finetune:` does
not already hold (learning rate, batch size, epochs and a wall-time cap of the writer's own; seed, validation share
and patience come from `finetune:`).

Which wins when a saved version is loaded: the version's writer.json keeps what defines its weights (the LoRA
structure: `lora_r`, `lora_alpha`, `lora_dropout`, `lora_targets`, and the base checkpoint's sha256); everything
else (shop name, grounding answers, token budget, time limit, the faithfulness and topic guards, prompt length,
copy bias, draft tokens, temperature, top-p, threads) comes from rsft.yml, so an operator changes how replies are
served without retraining.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .fields import check as check_setting
from .fields import setting

SECTION = "generative"
# The fields a saved writer keeps whatever rsft.yml says: they define the adapter's weights.
WEIGHT_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets")
PRECISIONS = ("auto", "float32", "bfloat16")  # of LoRA training
MOST_NEW_TOKENS = 512  # the largest max_new_tokens, and the largest budget fit_grounding gives a reply


def _check(condition: bool, key: str, message: str) -> None:
    check_setting(condition, SECTION, key, message)


def _targets(text: str, default: tuple[str, ...]) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class WriterSettings:
    """How the writer turns a question and its grounding answers into a reply (and what its writer.json keeps)."""

    shop_name: str = setting("The shop the assistant speaks for (in the writer's system prompt).", "Northwind Goods")
    grounding_answers: int = setting(
        "How many top bank answers the writer sees for a question. With two, the 135M writer mixed them and a third "
        "of its replies read as another topic's answer (docs/generative.md).", 1)
    max_new_tokens: int = setting("Longest written reply, in tokens.", 48)
    fit_grounding: bool = setting(
        "A reply may be as long as the longest grounding answer the writer sees plus a few tokens, when that is more "
        "than max_new_tokens: a shop's answers are often longer than 48 tokens, and a reply cut at the budget loses "
        "their end (generative/budget.py). The time limit still bounds every reply.", True)
    time_limit_seconds: float = setting("A reply not finished by then is replaced by the top grounding answer.", 5.0)
    guard_faithfulness: bool = setting(
        "Serving: a reply stating an amount, duration, URL, email or phone number that its grounding answers do not "
        "state is replaced by the top grounding answer (sampling for training is never guarded).", True)
    guard_topic: bool = setting(
        "Serving: a written reply whose nearest bank answer (fixed MiniLM) is none of its grounding answers has "
        "drifted to another topic and is replaced by the top grounding answer.", True)
    max_prompt_tokens: int = setting("Longer prompts keep their end (the question) and lose grounding text.", 640)
    copy_bias: float = setting(
        "Added to the logits of each grounding-answer token the reply has not yet used as often as the grounding "
        "does, while the writer serves and samples (0: off): a small model drifts from its grounding when it "
        "paraphrases; the bias keeps it to the answers' words without making it repeat them.", 4.0)
    draft_tokens: int = setting(
        "Serving: each decode step also checks up to this many tokens guessed from where the reply's last words "
        "occur in the prompt (a grounded reply copies runs of its grounding answer), keeping those the writer "
        "would choose itself: several tokens per pass over the weights (0: one token a step).", 4)
    temperature: float = setting("Sampling temperature of the proposal q when a round samples replies.", 0.8)
    top_p: float = setting("Nucleus sampling: the smallest token set with this much probability.", 0.95)
    cached_groundings: int = setting(
        "System turns (the rule and a question's grounding answers) whose keys and values the writer keeps, the most "
        "recently used (0: none): a question grounded on a kept one reads only itself, ~0.25 s sooner on 2 cores. "
        "~6 MB each, per served version.", 32)
    threads: int = setting("torch threads while the writer runs (0: every core: the 4-bit products on every core, "
                           "torch's own operations on one). On a busy 2-core machine one thread is ~2x faster than "
                           "two (OpenMP oversubscription).", 1)
    use_idle_cores: bool = setting(
        "Serving: a reply runs on every core when the machine's other processes left them idle since the previous "
        "reply (a decode step ~1.3x faster on a quiet 2-core machine), on `threads` when they did not (Linux "
        "/proc/stat; a round's writer keeps `round_threads`).", True)
    lora_r: int = setting("LoRA rank of a new adapter (a saved version keeps its own).", 8)
    lora_alpha: int = setting("LoRA scale numerator, scale = alpha / r (a saved version keeps its own).", 16)
    lora_dropout: float = setting("Dropout on the LoRA branch while training (a saved version keeps its own).", 0.05)
    lora_targets: tuple[str, ...] = _targets("Modules that get LoRA adapters (a saved version keeps its own).",
                                             ("q_proj", "v_proj"))

    def __post_init__(self) -> None:
        _check(bool(self.shop_name.strip()), "shop_name", "must not be empty")
        _check(1 <= self.grounding_answers <= 5, "grounding_answers", "must be between 1 and 5")
        _check(1 <= self.max_new_tokens <= MOST_NEW_TOKENS, "max_new_tokens",
               f"must be between 1 and {MOST_NEW_TOKENS}")
        _check(self.time_limit_seconds > 0, "time_limit_seconds", "must be > 0")
        _check(64 <= self.max_prompt_tokens <= 4096, "max_prompt_tokens", "must be between 64 and 4096")
        _check(0 <= self.copy_bias <= 20, "copy_bias", "must be between 0 and 20")
        _check(0 <= self.draft_tokens <= 7, "draft_tokens", "must be between 0 and 7")
        _check(self.temperature > 0, "temperature", "must be > 0")
        _check(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        _check(0 <= self.cached_groundings <= 4096, "cached_groundings", "must be between 0 and 4096")
        _check(0 <= self.threads <= 256, "threads", "must be between 0 and 256")
        _check(1 <= self.lora_r <= 256, "lora_r", "must be between 1 and 256")
        _check(self.lora_alpha >= 1, "lora_alpha", "must be >= 1")
        _check(0 <= self.lora_dropout < 1, "lora_dropout", "must be in [0, 1)")
        _check(bool(self.lora_targets) and all(isinstance(t, str) and t for t in self.lora_targets),
               "lora_targets", "name at least one module")

    def to_json(self) -> dict[str, Any]:
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(WriterSettings)}
        record["lora_targets"] = list(self.lora_targets)
        return record

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> WriterSettings:
        """Rebuild from writer.json; unknown keys are an error naming the valid ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ConfigError(f"{SECTION}: unknown key(s) {unknown}; valid keys are {sorted(names)}")
        values = dict(raw)
        if "lora_targets" in values:
            values["lora_targets"] = tuple(values["lora_targets"])
        return cls(**values)

    def keeping_weights_of(self, saved: WriterSettings) -> WriterSettings:
        """These (configured) settings with `saved`'s weight-defining LoRA structure: what a loaded version runs."""
        mine = {f.name: getattr(self, f.name) for f in dataclasses.fields(WriterSettings)}
        return WriterSettings(**{**mine, **{name: getattr(saved, name) for name in WEIGHT_FIELDS}})


@dataclass(frozen=True)
class LoraTraining:
    """One LoRA fine-tune of the writer on accepted (prompt, reply) pairs."""

    learning_rate: float = setting("AdamW learning rate of the adapter weights.", 5e-4)
    batch_size: int = setting("Pairs per step.", 8)
    max_epochs: int = setting("Upper bound on epochs.", 3)
    patience: int = setting("Stop after this many epochs without a better validation loss.", 1)
    val_fraction: float = setting("Share of pairs held out for early stopping (at least one when >= 2 pairs).", 0.15)
    seed: int = setting("Seed of the adapter's initialisation, shuffling and the validation split.", 0)
    max_seconds: float = setting("Stop after the epoch that passes this wall time (0: no limit).", 0.0)
    precision: str = setting("Arithmetic of the forward and backward passes: float32, bfloat16 (autocast; the "
                             "adapter and its optimizer stay float32) or auto (bfloat16 where the CPU multiplies "
                             "bfloat16 natively: AVX512-BF16 or AMX).", "auto")

    def __post_init__(self) -> None:
        _check(0 < self.learning_rate < 1, "learning_rate", "must be in (0, 1)")
        _check(self.batch_size >= 1, "batch_size", "must be >= 1")
        _check(self.max_epochs >= 1, "max_epochs", "must be >= 1")
        _check(self.patience >= 1, "patience", "must be >= 1")
        _check(0 <= self.val_fraction < 1, "val_fraction", "must be in [0, 1)")
        _check(self.max_seconds >= 0, "max_seconds", "must be >= 0")
        _check(self.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}")

    @classmethod
    def from_finetune_config(cls, config: Any, **overrides: Any) -> LoraTraining:
        """Take learning rate, batch size, epochs, patience, validation share and seed from a FinetuneConfig."""
        keys = ("learning_rate", "batch_size", "max_epochs", "patience", "val_fraction", "seed")
        values = {k: getattr(config, k) for k in keys if hasattr(config, k)}
        return cls(**{**values, **overrides})


@dataclass(frozen=True)
class GenerativeConfig(WriterSettings):
    """The generative kind (`model.kind: generative`): how the writer serves and samples, and its LoRA fine-tune."""

    tune_retriever: bool = setting(
        "A round fine-tunes a copy of the retriever that grounds the writer too (retriever_draws says on what); "
        "false: only the writer learns.",
        True)
    retriever_draws: int = setting(
        "With tune_retriever: the retriever's own candidates a round draws per prompt besides the written replies "
        "(bank answers at sample.temperature, distinct unless sample.with_replacement), scored and rejected as in a "
        "retrieval round; the accepted ones fine-tune the retriever. 0: each written reply's grounding answer is "
        "drawn from the retriever's proposal and the retriever learns from the accepted replies' groundings "
        "(noisier, and sampling is about twice as slow: docs/generative.md).", 8)
    lora_learning_rate: float = setting("AdamW learning rate of the writer's LoRA adapter (finetune.learning_rate "
                                        "is the retrieval kind's).", 5e-4)
    lora_batch_size: int = setting("(prompt, reply) pairs per LoRA step.", 8)
    lora_max_epochs: int = setting("Upper bound on LoRA epochs (the smaller of this and finetune.max_epochs).", 3)
    lora_max_seconds: float = setting("Stop LoRA training after the epoch that passes this wall time (0: no limit).",
                                      0.0)
    lora_precision: str = setting("Arithmetic of LoRA training: auto (bfloat16 where the CPU has AVX512-BF16 or AMX, "
                                  "~1.65x faster epochs there; float32 elsewhere), float32 or bfloat16.", "auto")
    round_threads: int = setting(
        "Threads while a round samples, fine-tunes and gates the writer, in the round's own process (0: every core: "
        "sampling with the 4-bit products on every core and torch on one, training with torch on every core); "
        "`threads` stays what serving uses. 1 leaves the other core of a 2-core machine to the servers; with the "
        "cores to itself a 200-prompt round took 31 % less time with 0 (16.4 against 23.7 min on a 2-core AVX2 "
        "machine; docs/benchmarks.md).", 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.retriever_draws >= 0, "retriever_draws", "must be >= 0")
        _check(0 < self.lora_learning_rate < 1, "lora_learning_rate", "must be in (0, 1)")
        _check(self.lora_batch_size >= 1, "lora_batch_size", "must be >= 1")
        _check(self.lora_max_epochs >= 1, "lora_max_epochs", "must be >= 1")
        _check(self.lora_max_seconds >= 0, "lora_max_seconds", "must be >= 0")
        _check(self.lora_precision in PRECISIONS, "lora_precision", f"must be one of {', '.join(PRECISIONS)}")
        _check(0 <= self.round_threads <= 256, "round_threads", "must be between 0 and 256")

    @property
    def own_retriever_draws(self) -> int:
        """Bank answers the retriever draws of its own per prompt in a round (0 when it does not learn)."""
        return self.retriever_draws if self.tune_retriever else 0

    @property
    def joint_groundings(self) -> bool:
        """Each sampled reply's grounding answer is drawn from the retriever's proposal (q is the joint), and the
        retriever learns from the accepted replies' groundings: `tune_retriever` with `retriever_draws: 0`."""
        return self.tune_retriever and self.retriever_draws == 0

    def for_rounds(self) -> GenerativeConfig:
        """This section as a round runs the writer: with `round_threads` instead of the serving `threads` (and
        never more: a round is long, and a reply arriving meanwhile would find its core taken)."""
        return dataclasses.replace(self, threads=self.round_threads, use_idle_cores=False)

    def writer_settings(self) -> WriterSettings:
        """The writer's part of the section (what a new writer.json records)."""
        return WriterSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(WriterSettings)})

    def lora_training(self) -> LoraTraining:
        """The LoRA fine-tune's knobs of this section; `GenerativePolicy.finetune` adds seed, validation share and
        patience from `finetune:`."""
        return LoraTraining(learning_rate=self.lora_learning_rate, batch_size=self.lora_batch_size,
                            max_epochs=self.lora_max_epochs, max_seconds=self.lora_max_seconds,
                            precision=self.lora_precision)
