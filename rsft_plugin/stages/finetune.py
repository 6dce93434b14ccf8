"""Stage 5 — fine-tune a copy of the live model on the accepted (prompt, candidate) pairs.

How a model learns belongs to its kind (`ResponsePolicy.finetune`; the retrieval kind's loss is in
models/retrieval_training.py). This stage hands it the accepted pairs, keyed by candidate key, and gets back a
trained copy; the live model is never modified. The pairs are handed over in a canonical order (by content), so a
kind's seeded shuffling and validation split give the same model for the same pairs however the log ordered them.
"""

from __future__ import annotations

from ..config import FinetuneConfig
from ..models.base import ResponsePolicy
from .records import FinetuneResult, Progress, TrainingPair, no_progress


def finetune(live: ResponsePolicy, pairs: list[TrainingPair], config: FinetuneConfig,
             progress: Progress = no_progress, show_bar: bool = True) -> FinetuneResult:
    """Train a copy of `live` on `pairs`; `live` itself is never modified."""
    ordered = sorted(pairs, key=lambda p: (p.prompt, p.target_key, p.negative_keys))
    return live.finetune(ordered, config, progress, show_bar)
