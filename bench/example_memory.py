"""An experiment for issue 11's quality targets: does remembering trusted examples beat fine-tuning alone?

The retrieval kind scores an answer by the cosine between the question and the answer's text. A round fine-tunes
the encoder on the accepted (question, answer) pairs and then forgets the pairs themselves. This script measures,
without rounds, what keeping them would add: an answer's score becomes

    lam * cos(question, answer text) + (1 - lam) * max cos(question, a remembered question of that answer)

(the answer's text alone when no question of it is remembered). The remembered questions are the dataset's
traffic questions with their gold labels, or with 20 % of the labels replaced by a uniformly random intent (a
crude stand-in for what a noisy round accepts; a real round filters most wrong pairs out). For each labelling the
encoder is fine-tuned on the same pairs with the product's `finetune_retrieval` and the default FinetuneConfig,
and the remembered questions are embedded by the fine-tuned encoder ("tuned memory") or the pretrained one ("base
memory"). Top-1 accuracy on the held-out questions.

    python -m bench.example_memory --datasets ../shared/datasets --out bench/results     # ~10 min on 2 cores
    python -m bench.example_memory --names golden                                        # one dataset

It prints a table and writes `example_memory.json`. The product has it since (models/memory.py, `model.memory_size`,
off by default); docs/benchmarks.md compares it in real rounds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from rsft_plugin.config import FinetuneConfig, ModelConfig
from rsft_plugin.models.base import TrainingPair
from rsft_plugin.models.encoder import embed, load_base_encoder
from rsft_plugin.models.kinds import pretrained_policy

from .common import DEFAULT_DATASETS, DEFAULT_RESULTS, load_dataset, resolve_datasets_dir, run_metadata, write_json

SIZES = {"bitext": (600, 400), "banking77": (600, 400), "golden": (360, 144)}  # traffic, held-out (as bench-quality)
MIX = (1.0, 0.7, 0.5, 0.3)  # lam; 1.0 = the answer's text alone (today's policy)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=DEFAULT_DATASETS)
    parser.add_argument("--names", default="bitext,banking77,golden")
    parser.add_argument("--noise", type=float, default=0.2, help="share of remembered labels made random")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = [row for name in args.names.split(",")
            for row in run_dataset(name, resolve_datasets_dir(args.datasets), args.noise, args.seed)]
    result = {"meta": run_metadata(vars(args) | {"mix": list(MIX), "sizes": SIZES}), "rows": rows}
    result["meta"]["wall_seconds"] = round(time.perf_counter() - started, 1)
    write_json(args.out / "example_memory.json", result)
    print(f"{'dataset':10} {'labels':8} {'memory':6} " + " ".join(f"lam={lam:<4}" for lam in MIX))
    for row in rows:
        print(f"{row['dataset']:10} {row['labels']:8} {row['memory']:6} "
              + " ".join(f"{row['accuracy'][str(lam)]:8.1f}" for lam in MIX))
    return 0


def run_dataset(name: str, datasets_dir: Path, noise: float, seed: int) -> list[dict[str, Any]]:
    n_traffic, n_heldout = SIZES[name]
    data = load_dataset(name, datasets_dir, n_traffic, n_heldout, seed)
    topics = [a.topic for a in data.bank.answers]
    gold = np.array([topics.index(label) for _, label in data.traffic])
    heldout_labels = np.array([topics.index(label) for _, label in data.heldout])
    rng = np.random.default_rng(seed)
    noisy = gold.copy()
    flipped = rng.random(len(gold)) < noise
    noisy[flipped] = rng.integers(0, len(topics), int(flipped.sum()))
    questions, heldout = [q for q, _ in data.traffic], [q for q, _ in data.heldout]
    base = load_base_encoder()
    base_traffic, base_heldout = embed(base, questions, 1000).numpy(), embed(base, heldout, 1000).numpy()
    rows = []
    for labels, tag in ((gold, "gold"), (noisy, f"noisy{round(noise * 100)}")):
        pairs = [TrainingPair(q, data.bank.answers[i].id) for q, i in zip(questions, labels, strict=True)]
        tuned = pretrained_policy(data.bank, ModelConfig(), kind="retrieval").finetune(
            pairs, FinetuneConfig(), show_bar=False).model
        tuned_heldout = tuned.encode(heldout).numpy()
        answer_cosines = tuned_heldout @ tuned.answer_embeddings.numpy().T  # (H, A)
        memories = {"tuned": (tuned_heldout, tuned.encode(questions).numpy()), "base": (base_heldout, base_traffic)}
        for memory, (asked, remembered) in memories.items():
            nearest = nearest_example(asked, remembered, labels, len(topics))
            rows.append({"dataset": name, "labels": tag, "memory": memory,
                         "accuracy": {str(lam): accuracy(answer_cosines, nearest, heldout_labels, lam) for lam in MIX}})
    return rows


def nearest_example(asked: np.ndarray, remembered: np.ndarray, labels: np.ndarray, n_answers: int) -> np.ndarray:
    """(H, A): the cosine of each asked question to the closest remembered question of each answer (NaN: none)."""
    cosines = asked @ remembered.T  # (H, T)
    nearest = np.full((len(asked), n_answers), np.nan)
    for answer in range(n_answers):
        mine = labels == answer
        if mine.any():
            nearest[:, answer] = cosines[:, mine].max(axis=1)
    return nearest


def accuracy(answer_cosines: np.ndarray, nearest: np.ndarray, truth: np.ndarray, lam: float) -> float:
    scores = lam * answer_cosines + (1 - lam) * np.where(np.isnan(nearest), answer_cosines, nearest)
    return round(float((scores.argmax(axis=1) == truth).mean()) * 100, 1)


if __name__ == "__main__":
    raise SystemExit(main())
