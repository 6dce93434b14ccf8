"""How closely the pretrained writer stays on its grounding: grounding answers × copy bias × topic guard.

For each setting the untuned writer (`max_new_tokens` 48, no time limit) answers the same held-out questions of
bitext and of the golden set (the quality benchmark's split, `--seed`), grounded by the pretrained retriever. Per
dataset and setting:

* *off topic* — share of written replies whose nearest bank answer (fixed MiniLM) is none of their grounding
  answers (what `generative.guard_topic` replaces);
* *written topic-correct* — the written reply's nearest answer has the labelled topic;
* *served topic-correct* — the same for what the customer is served (the guards' fallbacks are the top grounding
  answer); *retrieval* — the grounding answer's own topic-correct, the ceiling of a guarded writer;
* *similarity* — of the written reply to the labelled answer (fixed MiniLM); *fallbacks* by reason.

    python -m bench.writer_grounding --out bench/results                  # the committed grid (~25 min)
    python -m bench.writer_grounding --questions 3 --settings 1:4:on --out DIR   # one setting, a few questions
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rsft_plugin.config import Config

from .common import (
    DEFAULT_DATASETS,
    DEFAULT_RESULTS,
    finish_run,
    load_dataset,
    resolve_datasets_dir,
    run_metadata,
)

# grounding answers : copy bias : topic guard — the product's defaults are 1:4:on
GRID = ("2:0:off", "1:0:off", "1:2:on", "1:4:on", "1:6:on")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.writer_grounding", description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=DEFAULT_DATASETS, help="folder with bitext-customer-support/")
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="where writer_grounding.json goes")
    parser.add_argument("--questions", type=int, default=60, help="held-out questions per dataset (default 60)")
    parser.add_argument("--settings", default=",".join(GRID),
                        help=f"grounding:bias:guard triples, comma-separated (default {','.join(GRID)})")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    settings = [_parse(text) for text in args.settings.split(",")]
    started = time.perf_counter()
    result: dict[str, Any] = {"meta": run_metadata({"questions": args.questions, "settings": settings,
                                                    "seed": args.seed})}
    result["rows"] = measure_grid(settings, args.questions, resolve_datasets_dir(args.datasets), args.seed)
    finish_run(result, args.out / "writer_grounding.json", started, lambda _result, _folder: [])
    return 0


def _parse(text: str) -> dict[str, Any]:
    try:
        grounding, bias, guard = text.split(":")
        if guard not in ("on", "off"):
            raise ValueError(guard)
        return {"grounding": int(grounding), "copy_bias": float(bias), "guard_topic": guard == "on"}
    except ValueError:
        raise SystemExit(f"--settings: {text!r} is not grounding:bias:on|off (e.g. 1:4:on)") from None


def measure_grid(settings: list[dict[str, Any]], questions: int, datasets_dir: Path, seed: int) -> list[dict]:
    from rsft_plugin.generative.checkpoint import ensure_checkpoint
    from rsft_plugin.generative.policy import GenerativePolicy, base_cache
    from rsft_plugin.generative.settings import WriterSettings
    from rsft_plugin.generative.writer import Writer
    from rsft_plugin.models import pretrained_policy

    model_config = Config().model
    checkpoint = ensure_checkpoint(base_cache(Path("var") / "models"))
    datasets = {name: load_dataset(name, datasets_dir, 0, questions, seed) for name in ("bitext", "golden")}
    retrievers = {name: pretrained_policy(d.bank, model_config) for name, d in datasets.items()}
    rows = []
    for setting in settings:
        writer_settings = WriterSettings(max_new_tokens=48, time_limit_seconds=120.0,
                                         grounding_answers=setting["grounding"], copy_bias=setting["copy_bias"],
                                         guard_topic=setting["guard_topic"])
        writer = Writer.from_checkpoint(checkpoint, writer_settings)
        row: dict[str, Any] = {**setting}
        for name, dataset in datasets.items():
            policy = GenerativePolicy(retrievers[name], writer, model_config)
            started = time.perf_counter()
            row[name] = judge(policy, dataset.heldout_questions)
            row[name]["seconds"] = round(time.perf_counter() - started, 1)
            print(f"[writer_grounding] {setting} {name}: {row[name]}", file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def judge(policy: Any, questions: list[Any]) -> dict[str, Any]:
    """The measures of one writer setting on labelled questions (see the module docstring)."""
    answered = policy.answer_many([q.question for q in questions])
    outcomes = policy.writing_outcomes_of(answered, questions)
    written = [a.judged_text for a in answered]
    nearest = policy.nearest_answers(written)
    off_topic = [bool(text) and a.reason != "low_score" and answer.id not in a.grounding_ids
                 for a, text, (answer, _cosine) in zip(answered, written, nearest, strict=True)]
    n = len(questions)
    return {"n": n, "off_topic": round(sum(off_topic) / n, 4),
            "written_topic_correct": round(sum(o.topic_right for o in outcomes) / n, 4),
            "served_topic_correct": round(sum(o.served[0] for o in outcomes) / n, 4),
            "retrieval_topic_correct": round(sum(a.answer.topic == q.topic for a, q in
                                                 zip(answered, questions, strict=True)) / n, 4),
            "similarity": round(sum(o.similarity for o in outcomes) / n, 4),
            "fallbacks": dict(Counter(a.reason for a in answered if a.fallback))}


if __name__ == "__main__":
    sys.exit(main())
