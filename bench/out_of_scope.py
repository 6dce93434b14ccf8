"""How well `model.min_score` separates out-of-scope messages from real questions (docs/benchmarks.md).

    python -m bench.out_of_scope                 # full: every line of data/out_of_scope.csv and data/golden.csv
    python -m bench.out_of_scope --smoke --out var/bench-smoke

Each message is normalised as the assistant does (rsft_plugin.text.clean_text; a message left empty is asked
again, so it counts as caught). For each threshold, a message whose best cosine under the pretrained retrieval
policy is below it gets the "did not understand" reply. Per threshold: the share of out-of-scope lines caught,
the share of in-scope golden questions wrongly refused, and of those in-scope questions the share of correct
answers lost and of wrong answers caught (a refused wrong answer is a gain: the customer is offered topics
instead of a wrong answer).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from rsft_plugin.answer_bank import load_answer_bank
from rsft_plugin.config import Config
from rsft_plugin.golden import load_golden, load_out_of_scope
from rsft_plugin.text import clean_text

from .common import DEFAULT_RESULTS, REPO, exit_status, finish_run, run_metadata

THRESHOLDS = [round(0.10 + 0.025 * i, 3) for i in range(17)]  # 0.10 .. 0.50
EMPTY_SCORE = -1.0  # nothing left after clean_text: the assistant asks for a question, as if refused
SMOKE_SIZES = {"out_of_scope": 30, "golden": 60}


def sweep(out_scores: list[float], in_scores: list[float], in_correct: list[bool],
          thresholds: list[float]) -> list[dict[str, float]]:
    """Per threshold: caught (out-of-scope below it), refused (in-scope below it), correct lost, wrong caught.

    Each is a share in [0, 1]: caught of the out-of-scope lines, refused of the in-scope questions, correct_lost
    of the in-scope questions answered correctly, wrong_caught of those answered wrongly; accuracy_answered is the
    top-1 accuracy on the in-scope questions that are still answered.
    """
    out, scores, correct = np.asarray(out_scores), np.asarray(in_scores), np.asarray(in_correct, dtype=bool)
    rows = []
    for threshold in thresholds:
        refused = scores < threshold
        answered = ~refused
        rows.append({
            "threshold": threshold,
            "out_of_scope_caught": _share(out < threshold),
            "in_scope_refused": _share(refused),
            "correct_lost": _share(refused[correct]),
            "wrong_caught": _share(refused[~correct]),
            "accuracy_answered": _share(correct[answered]) if answered.any() else None,
        })
    return rows


def _share(mask: np.ndarray) -> float:
    return round(float(mask.mean()), 4) if mask.size else 0.0


def _answer(policy: Any, questions: list[str]) -> list[Any]:
    """The policy's answers to the questions as the assistant sees them (clean_text); None where that is empty."""
    cleaned = [clean_text(q) for q in questions]
    answered = iter(policy.answer_many([q for q in cleaned if q]))
    return [next(answered) if q else None for q in cleaned]


def measure(smoke: bool, seed: int) -> dict[str, Any]:
    from rsft_plugin.models import pretrained_policy  # torch: only once the arguments are parsed

    config = Config()
    bank = load_answer_bank(REPO / "data" / "answers.yml")
    golden = load_golden(REPO / "data" / "golden.csv", bank)
    out_of_scope = load_out_of_scope(REPO / "data" / "out_of_scope.csv")
    if smoke:
        rng = np.random.default_rng(seed)
        golden = [golden[i] for i in sorted(rng.choice(len(golden), SMOKE_SIZES["golden"], replace=False))]
        out_of_scope = [out_of_scope[i] for i in
                        sorted(rng.choice(len(out_of_scope), SMOKE_SIZES["out_of_scope"], replace=False))]
    policy = pretrained_policy(bank, config.model)
    in_answers = _answer(policy, [q.question for q in golden])
    out_answers = _answer(policy, [q.question for q in out_of_scope])
    in_scores = [a.score if a else EMPTY_SCORE for a in in_answers]
    in_correct = [a is not None and a.topic == q.topic for a, q in zip(in_answers, golden, strict=True)]
    out_scores = [a.score if a else EMPTY_SCORE for a in out_answers]
    kinds: dict[str, list[float]] = {}
    for question, score in zip(out_of_scope, out_scores, strict=True):
        kinds.setdefault(question.kind, []).append(score)
    return {
        "model": {"kind": config.model.kind, "version": "pretrained", "configured_min_score": config.model.min_score},
        "sizes": {"out_of_scope": len(out_of_scope), "in_scope": len(golden),
                  "in_scope_correct": int(sum(in_correct))},
        "sweep": sweep(out_scores, in_scores, in_correct, THRESHOLDS),
        "score_quantiles": {name: [round(float(q), 4) for q in np.quantile(values, [0.1, 0.5, 0.9])]
                            for name, values in (("out_of_scope", out_scores), ("in_scope", in_scores))},
        "out_of_scope_by_kind": {kind: {"n": len(v), "median_score": round(float(np.median(v)), 4)}
                                 for kind, v in sorted(kinds.items())},
        "highest_out_of_scope": sorted(({"question": q.question, "kind": q.kind, "score": round(s, 4)}
                                        for q, s in zip(out_of_scope, out_scores, strict=True)),
                                       key=lambda r: -r["score"])[:8],
    }


def check(result: dict[str, Any]) -> list[str]:
    """Structural checks of a run (what --smoke asserts)."""
    rows = result["sweep"]
    problems = []
    for key in ("out_of_scope_caught", "in_scope_refused"):
        values = [r[key] for r in rows]
        if any(b < a for a, b in zip(values, values[1:], strict=False)):
            problems.append(f"{key} is not monotone in the threshold: {values}")
        if not all(0 <= v <= 1 for v in values):
            problems.append(f"{key} has shares outside [0, 1]")
    if len(rows) != len(THRESHOLDS):
        problems.append(f"{len(rows)} sweep rows for {len(THRESHOLDS)} thresholds")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.out_of_scope", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="where out_of_scope.json and its PNG go")
    parser.add_argument("--seed", type=int, default=0, help="which lines --smoke keeps")
    parser.add_argument("--smoke", action="store_true", help="a sample of both sets, then check the output")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result: dict[str, Any] = {"meta": run_metadata({"thresholds": THRESHOLDS, "smoke": args.smoke,
                                                    "seed": args.seed})}
    result.update(measure(args.smoke, args.seed))
    from .plots import plot_out_of_scope

    finish_run(result, args.out / "out_of_scope.json", started, plot_out_of_scope)
    return exit_status(check(result))


if __name__ == "__main__":
    sys.exit(main())
