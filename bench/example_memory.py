"""An experiment for issue 11's quality targets: does remembering trusted examples beat fine-tuning alone?

The retrieval kind scores an answer by the cosine between the question and the answer's text. A round fine-tunes
the encoder on the accepted (question, answer) pairs and then forgets the pairs themselves. This script measures,
without rounds, what keeping them adds under two scoring rules (`nearest` = max cos(question, a remembered question
of that answer), left out for an answer with nothing remembered):

    blend lam:          lam * cos(question, answer text) + (1 - lam) * nearest
    near-duplicate w/t: cos(question, answer text) + w * max(0, nearest - t)    (the product's rule, models/memory.py)
    prototype c:        cos(question, normalise((1 - c) * answer text + c * normalise(mean of its remembered)))
    prototype c + near: the prototype's cosine plus the near-duplicate bonus at 0.5 / 0.6 (`model.memory_centroid`)

For each dataset and coverage (the share of the traffic a round would have accepted), a random subset of the
traffic questions is labelled with 20 % of the labels replaced by a uniformly random intent (a crude stand-in for
what a noisy round accepts; a real round filters most wrong pairs out), the encoder is fine-tuned on those pairs
with the product's `finetune_retrieval` and the default FinetuneConfig, the same pairs are remembered (embedded by
the fine-tuned encoder), and the held-out questions are answered. Top-1 accuracy; `none` is the fine-tune alone.

    python -m bench.example_memory --datasets ../shared/datasets --out bench/results     # ~15 min on 2 cores
    python -m bench.example_memory --names golden --coverage 0.15                        # one dataset, one share

It prints a table and writes `example_memory.json`. The product has the near-duplicate rule (`model.memory_size`,
`model.memory_weight`, `model.memory_threshold`); docs/benchmarks.md compares it in real rounds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from rsft_plugin.config import FinetuneConfig, ModelConfig
from rsft_plugin.models.base import TrainingPair
from rsft_plugin.models.kinds import pretrained_policy

from .common import DEFAULT_DATASETS, DEFAULT_RESULTS, load_dataset, resolve_datasets_dir, run_metadata, write_json

SIZES = {"bitext": (600, 400), "banking77": (600, 400), "golden": (360, 144)}  # traffic, held-out (as bench-quality)
BLEND = (0.7, 0.5)  # lam of the blend rule
NEAR = [(w, t) for w in (0.3, 0.5, 1.0) for t in (0.6, 0.7, 0.8)]  # (weight, threshold) of the near-duplicate rule
PRODUCT = ModelConfig()  # the product's near-duplicate weight and threshold, for "prototype c + near"
CENTROID = (0.3, 0.5, 0.7)  # c of the prototype rule: how far an answer moves towards its questions' mean


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=DEFAULT_DATASETS)
    parser.add_argument("--names", default="bitext,banking77,golden")
    parser.add_argument("--coverage", default="0.15,0.3,1.0", help="shares of the traffic remembered and tuned on")
    parser.add_argument("--noise", type=float, default=0.2, help="share of remembered labels made random")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    coverages = [float(c) for c in args.coverage.split(",")]
    rows = [run_dataset(name, resolve_datasets_dir(args.datasets), coverage, args.noise, args.seed)
            for name in args.names.split(",") for coverage in coverages]
    settings = {"blend": list(BLEND), "near": NEAR, "centroid": list(CENTROID), "sizes": SIZES}
    result = {"meta": run_metadata(vars(args) | settings), "rows": rows}
    result["meta"]["wall_seconds"] = round(time.perf_counter() - started, 1)
    write_json(args.out / "example_memory.json", result)
    rules = list(rows[0]["accuracy"]) if rows else []
    print(f"{'dataset':10} {'cover':>5} " + " ".join(f"{rule:>12}" for rule in rules))
    for row in rows:
        print(f"{row['dataset']:10} {row['coverage']:5} " + " ".join(f"{row['accuracy'][r]:12.1f}" for r in rules))
    return 0


def run_dataset(name: str, datasets_dir: Path, coverage: float, noise: float, seed: int) -> dict[str, Any]:
    n_traffic, n_heldout = SIZES[name]
    data = load_dataset(name, datasets_dir, n_traffic, n_heldout, seed)
    topics = [a.topic for a in data.bank.answers]
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.permutation(len(data.traffic))[:max(1, round(coverage * len(data.traffic)))])
    labels = np.array([topics.index(data.traffic[i][1]) for i in chosen])
    flipped = rng.random(len(labels)) < noise
    labels[flipped] = rng.integers(0, len(topics), int(flipped.sum()))
    questions = [data.traffic[i][0] for i in chosen]
    heldout, truth = [q for q, _ in data.heldout], np.array([topics.index(label) for _, label in data.heldout])
    pairs = [TrainingPair(q, data.bank.answers[i].id) for q, i in zip(questions, labels, strict=True)]
    tuned = pretrained_policy(data.bank, ModelConfig(), kind="retrieval").finetune(
        pairs, FinetuneConfig(), show_bar=False).model
    asked = tuned.encode(heldout).numpy()
    answer_cosines = asked @ tuned.answer_embeddings.numpy().T  # (H, A)
    remembered = tuned.encode(questions).numpy()
    nearest = nearest_example(asked, remembered, labels, len(topics))
    scores = {"none": answer_cosines}
    scores |= {f"blend {lam}": lam * answer_cosines + (1 - lam) * np.where(np.isnan(nearest), answer_cosines, nearest)
               for lam in BLEND}
    excess = np.nan_to_num(nearest, nan=-np.inf)
    scores |= {f"near {w}/{t}": answer_cosines + w * np.maximum(0.0, excess - t) for w, t in NEAR}
    for c in CENTROID:
        prototype_cosines = asked @ prototypes(tuned.answer_embeddings.numpy(), remembered, labels, c).T
        scores[f"proto {c}"] = prototype_cosines
        scores[f"proto {c}+near"] = prototype_cosines + PRODUCT.memory_weight * np.maximum(
            0.0, excess - PRODUCT.memory_threshold)
    accuracy = {rule: round(float((s.argmax(axis=1) == truth).mean()) * 100, 1) for rule, s in scores.items()}
    return {"dataset": name, "coverage": coverage, "remembered": len(questions), "accuracy": accuracy}


def prototypes(answers: np.ndarray, remembered: np.ndarray, labels: np.ndarray, centroid: float) -> np.ndarray:
    """(A, d): each answer with remembered questions moved `centroid` towards their mean direction, normalised."""
    moved = answers.copy()
    for answer in np.unique(labels):
        mean = remembered[labels == answer].sum(axis=0)
        mixed = (1 - centroid) * answers[answer] + centroid * mean / np.linalg.norm(mean)
        moved[answer] = mixed / np.linalg.norm(mixed)
    return moved


def nearest_example(asked: np.ndarray, remembered: np.ndarray, labels: np.ndarray, n_answers: int) -> np.ndarray:
    """(H, A): the cosine of each asked question to the closest remembered question of each answer (NaN: none)."""
    cosines = asked @ remembered.T  # (H, T)
    nearest = np.full((len(asked), n_answers), np.nan)
    for answer in range(n_answers):
        mine = labels == answer
        if mine.any():
            nearest[:, answer] = cosines[:, mine].max(axis=1)
    return nearest


if __name__ == "__main__":
    raise SystemExit(main())
