"""The Rasa peer: what a Rasa 3.6 user would train on the same gold-labelled traffic instead of rsft.

Runs inside `.venv-rasa` (Python 3.10, rasa==3.6.21), not in the project's environment:

    .venv-rasa/bin/python bench/rasa_peer.py --job job.json --workdir /tmp/peer --out predictions.json

job.json holds {"train": [[text, label], ...], "test": [[text, label], ...], "answers": {label: text},
"modes": ["diet", "response_selector"], "epochs": 100, "seed": 42}. For each mode it writes a small Rasa project
into the work dir, trains it with `rasa.model_training.train_nlu` (the function behind `rasa train nlu`), loads it
with `rasa.core.agent.Agent` and parses every test text. Both modes use the pipeline of `rasa init` (Rasa's
default: DIETClassifier + ResponseSelector on count-vector features), without the FallbackClassifier, so every
question gets its top prediction:

    diet               one NLU intent per label; the prediction is DIET's intent
    response_selector  one retrieval intent `faq/<label>` per label with its answer as the response; the
                       prediction is the ResponseSelector's `intent_response_key`

Written for Python 3.10 (no 3.11-only syntax).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")

PIPELINE = """recipe: default.v1
language: en
assistant_id: rsft-bench-peer
pipeline:
  - name: WhitespaceTokenizer
  - name: RegexFeaturizer
  - name: LexicalSyntacticFeaturizer
  - name: CountVectorsFeaturizer
  - name: CountVectorsFeaturizer
    analyzer: char_wb
    min_ngram: 1
    max_ngram: 4
  - name: DIETClassifier
    epochs: {epochs}
    constrain_similarities: true
    random_seed: {seed}
  - name: EntitySynonymMapper
  - name: ResponseSelector
    epochs: {epochs}
    constrain_similarities: true
    random_seed: {seed}
policies: []
"""


def clean(text: str) -> str:
    """One line, and no [..](..) / {..} that Rasa's training-data reader would take for entity markup."""
    for old, new in (("[", "("), ("]", ")"), ("{", "("), ("}", ")")):
        text = text.replace(old, new)
    return " ".join(text.split()) or "?"


def write_project(directory: Path, mode: str, train: list, answers: dict, keys: dict, epochs: int,
                  seed: int) -> tuple[Path, Path, Path]:
    import yaml

    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config.yml"
    config.write_text(PIPELINE.format(epochs=epochs, seed=seed), encoding="utf-8")
    by_label: dict = {}
    for text, label in train:
        by_label.setdefault(label, []).append(clean(text))
    intent = (lambda key: key) if mode == "diet" else (lambda key: f"faq/{key}")
    nlu = {"version": "3.1", "nlu": [
        {"intent": intent(keys[label]), "examples": "".join(f"- {t}\n" for t in sorted(set(texts)))}
        for label, texts in sorted(by_label.items())]}
    data = directory / "nlu.yml"
    data.write_text(yaml.safe_dump(nlu, allow_unicode=True, sort_keys=False), encoding="utf-8")
    domain = {"version": "3.1", "intents": sorted({intent(keys[label]).split("/")[0] for label in by_label})}
    if mode == "response_selector":
        domain["responses"] = {f"utter_faq/{keys[label]}": [{"text": clean(answers[label])}] for label in by_label}
    domain_path = directory / "domain.yml"
    domain_path.write_text(yaml.safe_dump(domain, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return config, data, domain_path


async def predict(model_path: str, texts: list, mode: str, labels_by_key: dict) -> list:
    from rasa.core.agent import Agent

    agent = Agent.load(model_path)
    predictions = []
    for text in texts:
        parsed = await agent.parse_message(clean(text))
        if mode == "diet":
            key = (parsed.get("intent") or {}).get("name")
        else:
            selected = (parsed.get("response_selector") or {}).get("default") or {}
            key = ((selected.get("response") or {}).get("intent_response_key") or "").split("/", 1)[-1]
        predictions.append(labels_by_key.get(key))
    return predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", required=True, type=Path)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    job = json.loads(args.job.read_text(encoding="utf-8"))
    import rasa
    from rasa.model_training import train_nlu

    labels = sorted({label for _, label in job["train"]})
    keys = {label: f"l{i:03d}" for i, label in enumerate(labels)}  # Rasa-safe names ("reverted_card_payment?")
    labels_by_key = {key: label for label, key in keys.items()}
    test_texts = [text for text, _ in job["test"]]
    results = {"rasa_version": rasa.__version__, "python": sys.version.split()[0], "modes": {}}
    for mode in job["modes"]:
        project = args.workdir / mode
        config, data, domain = write_project(project, mode, job["train"], job["answers"], keys, job["epochs"],
                                             job["seed"])
        started = time.perf_counter()
        model = train_nlu(str(config), str(data), str(project / "models"), fixed_model_name=mode,
                          domain=str(domain))
        train_seconds = time.perf_counter() - started
        if not model:
            raise SystemExit(f"rasa train nlu produced no model for mode {mode}")
        started = time.perf_counter()
        predictions = asyncio.run(predict(model, test_texts, mode, labels_by_key))
        predict_seconds = time.perf_counter() - started
        correct = sum(p == label for p, (_, label) in zip(predictions, job["test"], strict=True))
        results["modes"][mode] = {"accuracy": correct / len(test_texts) if test_texts else 0.0,
                                  "n_test": len(test_texts), "n_train": len(job["train"]),
                                  "train_seconds": round(train_seconds, 2),
                                  "predict_seconds": round(predict_seconds, 2), "predictions": predictions}
    args.out.write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
