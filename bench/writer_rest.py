"""Reply latency of the generative kind over REST: the real Rasa server and action server (the Stack `make run`
uses) serving the untuned writer, one customer at a time on loopback.

Measures the wall time of each POST to Rasa's REST webhook (p50/p99), the action server's start (it loads MiniLM
and the writer), and, from the turn log, the writer's own milliseconds, prompt and new tokens, and how many replies
fell back to the grounding answer and why. Bounded: at most 64 questions.

    python -m bench.writer_rest --out var/bench-writer-rest                  # 16 questions, <= 48 new tokens
    python -m bench.writer_rest --questions 4 --max-new-tokens 16            # a quick look
    python -m bench.writer_rest --fit-grounding    # the product's default budget: the grounding answer's length + 12
    python -m bench.writer_rest --golden --questions 32   # distinct questions from data/golden.csv

By default the timed questions cycle through 8 fixed ones (asked again from the 9th on); with `--golden` they are N
questions of the golden set drawn with a fixed seed, each asked once (its 36 topics equally likely).
`grounding_seen_before` counts the timed replies grounded on an answer an earlier reply was grounded on (the writer
keeps those system turns' keys and values: `generative.cached_groundings`).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests
import yaml

REPO = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "Can I return it after 3 weeks if I opened it?", "How much does express shipping cost?",
    "I forgot my password, what do I do?", "When will I get my refund?", "Can I cancel my order?",
    "Do you ship abroad?", "How long is the warranty?", "My parcel has not arrived yet, where is it?",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "var" / "bench-writer-rest")
    parser.add_argument("--questions", type=int, default=16, help="how many timed questions (1-64)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--time-limit", type=float, default=5.0, help="generative.time_limit_seconds")
    parser.add_argument("--golden", action="store_true",
                        help="ask N golden-set questions (a fixed seed) once each instead of cycling 8 fixed ones")
    parser.add_argument("--fit-grounding", action="store_true",
                        help="generative.fit_grounding on (the product's default): a reply may be as long as its "
                             "grounding answer + 12 tokens; off by default, so the budget is the issue's <= 48")
    args = parser.parse_args(argv)
    if not 1 <= args.questions <= 64:
        parser.error("--questions must be between 1 and 64")
    os.environ.setdefault("RSFT_BASE_CACHE", str(REPO / "var" / "base-models"))  # the converted base, shared
    with tempfile.TemporaryDirectory(prefix="rsft-writer-rest-") as scratch:
        questions = _golden_questions(args.questions) if args.golden else [
            QUESTIONS[i % len(QUESTIONS)] for i in range(args.questions)]
        result = measure(Path(scratch), questions, args.max_new_tokens, args.time_limit, args.fit_grounding)
        result["questions_from"] = "data/golden.csv" if args.golden else "8 fixed, cycled"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "writer_rest.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("rest_ms", "writer_ms", "fallbacks", "action_server_start_seconds",
                                             "version_load_seconds")},
                     indent=1))
    return 0


def measure(directory: Path, questions: list[str], max_new_tokens: int, time_limit: float,
            fit_grounding: bool) -> dict[str, Any]:
    from rsft_plugin.answer_bank import load_answer_bank
    from rsft_plugin.config import load_config
    from rsft_plugin.launcher import Stack
    from rsft_plugin.models import pretrained_policy
    from rsft_plugin.parts import build_parts

    config = load_config(_write_config(directory, max_new_tokens, time_limit, fit_grounding))
    parts = build_parts(config)  # this process's composition root (the servers build their own)
    policy = pretrained_policy(load_answer_bank(config.paths.answers), config.model,
                               models_dir=config.paths.models_dir)
    parts.registry.set_live(parts.registry.publish(policy, notes="untuned generative").name, "bench")
    starts: dict[str, float] = {}

    def announce(line: str) -> None:  # "rsft: actions up at URL (12.3 s)"
        print(line, flush=True)
        if " up at " in line and line.rstrip().endswith(" s)"):
            starts[line.split()[1]] = float(line.rsplit("(", 1)[1].split()[0])

    stack = Stack(config, log_dir=directory / "logs", announce=announce)
    stack.start()
    try:
        _ask(stack, "warm-up", QUESTIONS[0])
        timed = [_ask(stack, f"rest-{i}", question) for i, question in enumerate(questions)]
        turns = list(parts.log.iter_turns())
        writings = [t.writing for t in turns if t.sender_id.startswith("rest-") and t.writing]
        seen = _grounding_seen_before([t.writing for t in turns if t.writing])
        loaded = _version_load_seconds(directory / "logs" / "actions.log")
    finally:
        stack.stop()
        parts.close()
    reasons: dict[str, int] = {}
    for writing in writings:
        if writing["fallback"]:
            reasons[writing["reason"]] = reasons.get(writing["reason"], 0) + 1
    return {"questions": len(questions), "max_new_tokens": max_new_tokens, "fit_grounding": fit_grounding,
            "time_limit_seconds": time_limit,
            "load_average": list(os.getloadavg()), "cpus": os.cpu_count(),
            "action_server_start_seconds": starts.get("actions"), "version_load_seconds": loaded,
            "rest_ms": _quantiles([ms for ms, _ in timed]), "http_ok": sum(ok for _, ok in timed),
            "writer_ms": _quantiles([w["writer_ms"] for w in writings]),
            "new_tokens": _quantiles([w["new_tokens"] for w in writings]),
            "prompt_tokens": _quantiles([w["prompt_tokens"] for w in writings]),
            "fallbacks": {"n": sum(reasons.values()), "reasons": reasons}, "written_turns": len(writings),
            "grounding_seen_before": seen}


def _golden_questions(n: int) -> list[str]:
    """`n` questions drawn from the golden set (our own data: data/golden.csv, 14 per topic) with a fixed seed: every
    topic equally likely, so topics repeat less than in a shop's traffic, where a few topics are most questions."""
    with (REPO / "data" / "golden.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [row["question"] for row in random.Random(0).sample(rows, n)]


def _grounding_seen_before(writings: list[dict[str, Any]]) -> int:
    """How many timed replies (after the warm-up) were grounded on answers an earlier reply was grounded on."""
    seen: set[tuple[str, ...]] = set()
    repeats = 0
    for index, writing in enumerate(writings):
        grounding = tuple(writing["grounding_ids"])
        repeats += index > 0 and grounding in seen
        seen.add(grounding)
    return repeats


def _version_load_seconds(actions_log: Path) -> float | None:
    """How long the action server took to load the live version (MiniLM + writer), from its log line."""
    for line in actions_log.read_text(encoding="utf-8", errors="replace").splitlines():
        if "serving model version" in line and "loaded in " in line:
            return float(line.rsplit("loaded in ", 1)[1].split()[0])
    return None


def _ask(stack: Any, sender: str, message: str) -> tuple[float, bool]:
    started = time.perf_counter()
    response = requests.post(f"{stack.rasa_url}/webhooks/rest/webhook", json={"sender": sender, "message": message},
                             timeout=120)
    ok = response.status_code == 200 and any(m.get("text") for m in response.json())
    return (time.perf_counter() - started) * 1000, ok


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(float(np.percentile(values, 50)), 1),
            "p99": round(float(np.percentile(values, 99)), 1), "mean": round(float(np.mean(values)), 1),
            "max": round(float(max(values)), 1)}


def _write_config(directory: Path, max_new_tokens: int, time_limit: float, fit_grounding: bool) -> Path:
    from rsft_plugin.ports import free_port

    raw = {"paths": {"db": str(directory / "rsft.db"), "models_dir": str(directory / "models"),
                     "answers": str(REPO / "data" / "answers.yml"), "golden": str(REPO / "data" / "golden.csv"),
                     "tracker_db": str(directory / "tracker.db"), "run_dir": str(REPO / "var" / "run"),
                     "rounds_dir": str(directory / "rounds"), "bot_dir": str(REPO / "bot"),
                     "rasa_bin": str(REPO / ".venv-rasa" / "bin" / "rasa")},
           "server": {"rasa_port": free_port(), "action_port": free_port(), "web_port": free_port()},
           "model": {"kind": "generative"},
           # the latency target is for <= max_new_tokens; fit_grounding lets the shop's long answers raise it
           "generative": {"max_new_tokens": max_new_tokens, "fit_grounding": fit_grounding,
                          "time_limit_seconds": time_limit}}
    path = directory / "rsft.yml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


if __name__ == "__main__":
    raise SystemExit(main())
