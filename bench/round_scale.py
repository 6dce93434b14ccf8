"""One round on a big PostgreSQL log: fill it with synthetic traffic, then time the round (issue 13, item 5).

    python -m bench.round_scale --turns 100000 --out bench/results     # make bench-round-scale

Starts a throwaway PostgreSQL (rsft_plugin/pgserver.py, stopped at the end), writes an rsft installation whose
`log.url` names it, and fills the log through the log interface (`log_turn`, `rate`, `record_signal`, several
connections at once): banking77 training questions, cycled, each answered ONCE by the pretrained model (the same
question always gets the same answer), a share of turns rated 👍/👎 by whether that answer's topic is the
question's intent (flipped with probability `noise`), and a share given an implicit signal (thanks on a right
answer, a re-ask on a wrong one). Then bench/speed_round.py runs one round with the product's defaults in a process
of its own and reports seconds per stage and peak memory; this module adds how long the fill took.

Writes round_scale.json into --out. Datasets are read from --datasets, never copied.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .common import DEFAULT_DATASETS, DEFAULT_RESULTS, resolve_datasets_dir, run_metadata, write_json

TURNS_PER_CONVERSATION = 4
SIZES = {"turns": 100_000, "rated_share": 0.3, "signal_share": 0.05, "noise": 0.2, "heldout": 300, "workers": 4}
SMOKE = {**SIZES, "turns": 600, "heldout": 40}
SMOKE_SCORE_LIMITS = {"max_rated_turns": 100, "max_signals": 10}  # of about 180 ratings and 20 signals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.round_scale", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=DEFAULT_DATASETS, help="folder with banking77/")
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="where round_scale.json goes")
    parser.add_argument("--turns", type=int, help=f"turns logged before the round (full: {SIZES['turns']})")
    parser.add_argument("--workers", type=int, help="connections filling the log at once (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-rated-turns", type=int, help="score.max_rated_turns for the round (0: every rated "
                        "turn ever logged, as before the bound; default: the product's)")
    parser.add_argument("--max-signals", type=int, help="score.max_signals for the round (0: all)")
    parser.add_argument("--smoke", action="store_true", help="a few hundred turns, then check the output")
    sub = parser.add_subparsers(dest="command")
    fill_parser = sub.add_parser("fill", help="(internal) fill the log of an installation")
    fill_parser.add_argument("--config", required=True, type=Path)
    fill_parser.add_argument("--datasets", required=True, type=Path)
    fill_parser.add_argument("--sizes", required=True, help="JSON")
    fill_parser.add_argument("--seed", type=int, default=0)
    fill_parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    if args.command == "fill":
        return fill(args.config, args.datasets, json.loads(args.sizes), args.seed, args.out)
    # `timeout` or kill: unwind, so the round's process is killed and the PostgreSQL server stopped and removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = dict(SMOKE if args.smoke else SIZES)
    sizes.update({k: v for k, v in (("turns", args.turns), ("workers", args.workers)) if v})
    started = time.perf_counter()
    result = {"meta": run_metadata({**sizes, "seed": args.seed, "smoke": args.smoke}),
              **measure(resolve_datasets_dir(args.datasets), sizes, args.seed, args.smoke, _score_limits(args))}
    result["meta"]["wall_seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "round_scale.json", result)
    problems = check(result) if args.smoke else []
    for problem in problems:
        print(f"CHECK FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _score_limits(args: argparse.Namespace) -> dict[str, int]:
    return {key: value for key, value in (("max_rated_turns", args.max_rated_turns),
                                          ("max_signals", args.max_signals)) if value is not None}


def measure(datasets_dir: Path, sizes: dict[str, Any], seed: int, smoke: bool,
            score: dict[str, int] | None = None) -> dict[str, Any]:
    """Start PostgreSQL, fill its log, time one round; the server is stopped whatever happens."""
    from rsft_plugin.pgserver import PostgresServer

    from .common import load_dataset, write_world

    sections: dict[str, Any] = {"log": {}}
    if smoke:  # a few hundred turns: lower the product's minimums so the round trains instead of stopping, 150
        # prompts (short sample and fine-tune), and score's bounds below the ratings and signals logged, so that
        # the bounded reads are exercised
        sections.update({"collect": {"min_prompts": 5, "max_prompts": 150}, "reject": {"min_accepted": 3},
                         "finetune": {"max_epochs": 1}, "score": SMOKE_SCORE_LIMITS})
    if score:
        sections["score"] = {**sections.get("score", {}), **score}
    with tempfile.TemporaryDirectory(prefix="rsft-bench-round-scale-") as work_dir, \
            PostgresServer.start() as server:
        work = Path(work_dir)
        sections["log"]["url"] = server.create_database("rsft")
        dataset = load_dataset("banking77", datasets_dir, 10**6, sizes["heldout"], seed)  # every training question
        config = write_world(work, dataset.bank, dataset.heldout, sections)
        _run([sys.executable, "-m", "bench.round_scale", "fill", "--config", str(config.source), "--datasets",
              str(datasets_dir), "--sizes", json.dumps(sizes), "--seed", str(seed), "--out",
              str(work / "fill.json")], "filling the log")
        filled = json.loads((work / "fill.json").read_text())
        print(f"  filled {filled['turns']} turns in {filled['fill_seconds']} s", flush=True)
        _run([sys.executable, "-m", "bench.speed_round", "run", "--config", str(config.source), "--out",
              str(work / "round.json"), "--baseline-steps", "0"], "the round")
        numbers = json.loads((work / "round.json").read_text())
    print(f"  round {numbers['status']}: {numbers['stage_seconds']}, "
          f"peak memory {numbers['memory_after_round']['maxrss_mb']} MB", flush=True)
    return {"sizes": sizes, "log": "PostgreSQL 15 (throwaway server: fsync off)",
            "config_sections": {k: v for k, v in sections.items() if k != "log"},
            "fill": filled, "round": numbers, "peak_memory_mb": numbers["memory_after_round"]["maxrss_mb"]}


def fill(config_path: Path, datasets_dir: Path, sizes: dict[str, Any], seed: int, out: Path) -> int:
    """Log `sizes['turns']` turns (with ratings and signals) through the log interface; timings into `out`."""
    import numpy as np

    from rsft_plugin.config import load_config
    from rsft_plugin.models import pretrained_policy
    from rsft_plugin.parts import build_parts

    from .common import load_dataset

    config = load_config(config_path)
    dataset = load_dataset("banking77", datasets_dir, 10**6, sizes["heldout"], seed)
    started = time.perf_counter()
    with build_parts(config) as parts:
        live = pretrained_policy(dataset.bank, config.model)
        name = parts.registry.publish(live).name
        parts.registry.set_live(name, "bench")
    traffic = dataset.traffic[:sizes["turns"]]  # a smoke run needs no more distinct questions than turns
    questions = [text for text, _ in traffic]
    answered = live.answer_many(questions)  # once per distinct question: the fill then only writes
    answer_seconds = time.perf_counter() - started
    right = [a.topic == label for a, (_, label) in zip(answered, traffic, strict=True)]
    rng = np.random.default_rng(seed)
    n = sizes["turns"]
    rated = rng.random(n) < sizes["rated_share"]
    flipped = rng.random(n) < sizes["noise"]
    signalled = ~rated & (rng.random(n) < sizes["signal_share"])
    plan = _Plan(questions, answered, right, rated, flipped, signalled, name)
    workers = sizes["workers"]
    logging_started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        counts = list(pool.map(lambda w: _fill_share(config, plan, range(w, n, workers)), range(workers)))
    logging_seconds = time.perf_counter() - logging_started
    with build_parts(config) as parts:
        rows = {table: parts.log.count(table) for table in ("turns", "ratings", "signals")}
        reads = _time_round_reads(parts.log, config)
    out.write_text(json.dumps({
        "turns": n, "distinct_questions": len(questions), "turns_per_conversation": TURNS_PER_CONVERSATION,
        "rows": rows, "ratings_right_share": round(float(np.mean([right[i % len(right)] for i in range(n)])), 4),
        "workers": workers, "answer_seconds": round(answer_seconds, 1), "logging_seconds": round(logging_seconds, 1),
        "fill_seconds": round(time.perf_counter() - started, 1),
        "turns_per_second": round(n / logging_seconds, 1),
        "written": {k: sum(c[k] for c in counts) for k in counts[0]}, "round_reads": reads}, indent=1))
    return 0


def _time_round_reads(log: Any, config: Any) -> dict[str, dict[str, float]]:
    """The log reads a round makes, each timed alone (bounded by collect.max_prompts and score.max_rated_turns /
    max_signals), beside the unbounded reads score made before those bounds (every rating and signal ever)."""
    score = config.score
    reads = {"turns_for_round(None, max_prompts)": lambda: log.turns_for_round(None, config.collect.max_prompts),
             "rated_turns(newest=max_rated_turns) (score)": lambda: log.rated_turns(
                 newest=score.max_rated_turns or None),
             "signals(newest=max_signals) (score)": lambda: log.signals(newest=score.max_signals or None),
             "rated_turns() (every rated turn: score's read before the bound)": log.rated_turns,
             "signals() (every signal: likewise)": log.signals}
    timed = {}
    for name, read in reads.items():
        started = time.perf_counter()
        rows = read()
        timed[name] = {"rows": len(rows), "seconds": round(time.perf_counter() - started, 3)}
    return timed


class _Plan:
    """What every turn says, decided up front (the same for any number of workers)."""

    def __init__(self, questions: list[str], answered: list[Any], right: list[bool], rated: Any, flipped: Any,
                 signalled: Any, version: str) -> None:
        self.questions, self.answered, self.right = questions, answered, right
        self.rated, self.flipped, self.signalled, self.version = rated, flipped, signalled, version


def _fill_share(config: Any, plan: _Plan, turn_numbers: range) -> dict[str, int]:
    """One worker: its own composition root (its own connection), logging the turns numbered `turn_numbers`."""
    from rsft_plugin.log import TurnRecord
    from rsft_plugin.parts import build_parts

    written = {"turns": 0, "ratings": 0, "signals": 0}
    with build_parts(config) as parts:
        for i in turn_numbers:
            which = i % len(plan.questions)
            answer, sender = plan.answered[which], f"scale-{i // TURNS_PER_CONVERSATION}"
            turn_id = parts.log.log_turn(TurnRecord(
                sender_id=sender, message_id=None, user_text=plan.questions[which], answer_id=answer.answer_id,
                answer_topic=answer.topic, answer_text=answer.text, model_version=plan.version,
                score=answer.score, probability=answer.probability,
                top_k=[{"answer_id": r.answer_id, "topic": r.topic, "cosine": round(r.cosine, 4),
                        "probability": round(r.probability, 4)} for r in answer.top_k],
                latency_ms=5.0, reply_key=answer.key))
            written["turns"] += 1
            if plan.rated[i]:
                parts.log.rate(turn_id, sender, int(plan.right[which]) ^ int(plan.flipped[i]))
                written["ratings"] += 1
            elif plan.signalled[i]:
                kind = "thanks" if plan.right[which] else "reask"
                parts.log.record_signal(turn_id, sender, kind, answer.key)
                written["signals"] += 1
    return written


def check(result: dict[str, Any]) -> list[str]:
    problems = []
    fill_numbers, round_numbers = result["fill"], result["round"]
    if fill_numbers["rows"]["turns"] != fill_numbers["turns"]:
        problems.append(f"{fill_numbers['rows']['turns']} turns in the log, {fill_numbers['turns']} written")
    if round_numbers.get("status") not in ("promoted", "kept"):
        problems.append(f"the round ended {round_numbers.get('status')}: {round_numbers.get('reason')}")
    limits, stats = result["config_sections"].get("score", {}), round_numbers.get("stats", {})
    used = {"max_rated_turns": stats.get("rated_turns_used", 0),
            "max_signals": sum((stats.get("signals_used") or {}).values())}
    for key, limit in limits.items():
        if limit and not 0 < used[key] <= limit:
            problems.append(f"score read {used[key]} for score.{key} = {limit}")
    return problems


def _run(command: list[str], what: str) -> None:
    from .common import REPO

    done = subprocess.run(command, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed (exit {done.returncode}): {' '.join(command[:4])} ...")


if __name__ == "__main__":
    sys.exit(main())
