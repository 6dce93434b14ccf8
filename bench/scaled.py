"""Scaled-stack benchmark (issue 13): `rsft serve --scale` against one process of each, on loopback.

1. back-to-back throughput: `throughput_users` threads ask `throughput_requests` questions with no pause, first
   against the single-process stack (`rsft serve`: SQLite log and tracker store, one Rasa, one action server),
   then through HAProxy in front of the scaled one (PostgreSQL, Redis lock store, `rasa_servers` Rasa and
   `action_servers` action servers); messages/s and latency of each;
2. customers: `customers` simulated customers for `seconds` through the load balancer, each asking a question,
   reading it for `think_seconds`, rating the answer (👍/👎 button), thinking again; then every answer a customer
   was shown is looked up in the log (a turn lost otherwise) and every rating they were thanked for (a rating
   lost otherwise); HTTP 5xx, failures and latency p50/p95/p99 of every request.

Both stacks serve the same pretrained model from the same temporary installation and the same cached Rasa model.
Nothing is asserted here; `--smoke` checks only that the output is complete.

    python -m bench.scaled                    # make bench-scaled (~10 min)
    python -m bench.scaled --smoke --out DIR  # seconds-long version with checks
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests

from .common import DEFAULT_RESULTS, REPO, exit_status, percentile, run_metadata, write_json, write_world

FULL = {"customers": 100, "seconds": 120, "think_seconds": 2.0, "throughput_users": 20, "throughput_requests": 400,
        "rasa_servers": 2, "action_servers": 2, "warmup": 40}
SMOKE = {"customers": 4, "seconds": 10, "think_seconds": 0.5, "throughput_users": 4, "throughput_requests": 24,
         "rasa_servers": 2, "action_servers": 1, "warmup": 4}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaled", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="where scaled.json goes")
    parser.add_argument("--customers", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, then check the output")
    parser.add_argument("--no-single", action="store_true", help="measure the scaled stack only")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (servers' logs) and print it")
    args = parser.parse_args(argv)
    sizes = dict(SMOKE if args.smoke else FULL)
    sizes.update({k: v for k, v in (("customers", args.customers), ("seconds", args.seconds)) if v})
    result: dict[str, Any] = {"meta": run_metadata({**sizes, "smoke": args.smoke})}
    work = Path(tempfile.mkdtemp(prefix="rsft-bench-scaled-"))
    postgres_dir = Path(tempfile.mkdtemp(prefix="rsft-bench-scaled-pg-"))  # PostgreSQL's own user must reach it
    out_json = args.out / "scaled.json"
    started = time.perf_counter()
    try:
        config = _world(work, postgres_dir, sizes)
        if not args.no_single:
            result["single"] = _measure_single(config, sizes)
            write_json(out_json, result)
        result["scaled"] = _measure_scaled(config, sizes)
        if not args.no_single:
            result["throughput_scaled_over_single"] = round(
                result["scaled"]["throughput"]["messages_per_second"]
                / max(result["single"]["throughput"]["messages_per_second"], 1e-9), 2)
    finally:
        if args.keep:
            print(f"kept {work} (servers' logs in logs-single/, logs-scaled/)")
        else:
            shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(postgres_dir, ignore_errors=True)
    result["meta"]["wall_seconds"] = round(time.perf_counter() - started, 1)
    write_json(out_json, result)
    print(f"wrote {out_json}: {json.dumps({k: v for k, v in result.items() if k != 'meta'})[:600]}")
    return exit_status(check_scaled(result))


def _world(directory: Path, postgres_dir: Path, sizes: dict[str, Any]) -> Any:
    from rsft_plugin.answer_bank import load_answer_bank
    from rsft_plugin.models import pretrained_policy
    from rsft_plugin.parts import build_parts
    from rsft_plugin.ports import free_port, free_port_run

    bank = load_answer_bank(REPO / "data" / "answers.yml")
    config = write_world(directory, bank, [], {
        "paths": {"run_dir": str(REPO / "var" / "run"), "postgres_dir": str(postgres_dir)},  # cached Rasa model
        "server": {"rasa_port": free_port(), "action_port": free_port(), "web_port": free_port()},
        "scale": {"rasa_servers": sizes["rasa_servers"], "action_servers": sizes["action_servers"],
                  "rasa_ports_from": free_port_run(sizes["rasa_servers"]),
                  "action_ports_from": free_port_run(sizes["action_servers"]), "redis_port": free_port(),
                  "postgres_port": free_port()},
        "privacy": {"max_ratings_per_minute": 100_000}})
    with build_parts(config) as parts:
        parts.registry.set_live(parts.registry.publish(pretrained_policy(bank, config.model), notes="pretrained").name,
                                "bench")
    return config


def _questions() -> list[str]:
    from rsft_plugin.golden import load_golden

    return [q.question for q in load_golden(REPO / "data" / "golden.csv")]


def _measure_single(config: Any, sizes: dict[str, Any]) -> dict[str, Any]:
    from rsft_plugin.launcher import Stack

    stack = Stack(config, log_dir=config.source.parent / "logs-single")
    print("single process: starting Rasa + action server ...", flush=True)
    began = time.perf_counter()
    stack.start()
    try:
        measured = {"start_seconds": round(time.perf_counter() - began, 1)}
        _warm_up(stack.rasa_url, sizes)
        measured["throughput"] = throughput(stack.rasa_url, sizes, "single")
    finally:
        stack.stop()
    return measured


def _measure_scaled(config: Any, sizes: dict[str, Any]) -> dict[str, Any]:
    from rsft_plugin.config import load_config
    from rsft_plugin.parts import build_parts
    from rsft_plugin.scaled import ScaledStack

    stack = ScaledStack(config, log_dir=config.source.parent / "logs-scaled")
    print(f"scaled: starting PostgreSQL, Redis, {sizes['rasa_servers']} Rasa, {sizes['action_servers']} action "
          "servers and HAProxy ...", flush=True)
    began = time.perf_counter()
    stack.start()
    try:
        measured: dict[str, Any] = {"start_seconds": round(time.perf_counter() - began, 1)}
        _warm_up(stack.rasa_url, sizes)
        measured["throughput"] = throughput(stack.rasa_url, sizes, "scaled")
        # the log the servers write: the scaled stack's PostgreSQL (this process's own parts, built once)
        with build_parts(load_config(config.source, {"log": {"url": stack.log_url}})) as parts:
            measured["customers"] = customers(stack.rasa_url, parts.log, sizes)
        measured["restarts"] = {name: server["restarts"] for name, server in stack.status()["servers"].items()}
    finally:
        stack.stop()
    return measured


def _warm_up(url: str, sizes: dict[str, Any]) -> None:
    session = requests.Session()
    for n, question in enumerate(_questions()[: sizes["warmup"]]):
        _post(session, url, f"warm-{n % 8}", question)


def _post(session: requests.Session, url: str, sender: str, message: str) -> tuple[int, list[dict], float]:
    """(HTTP status or 0 when no response came, the bot's messages, milliseconds)."""
    began = time.perf_counter()
    try:
        response = session.post(f"{url}/webhooks/rest/webhook", json={"sender": sender, "message": message},
                                timeout=120)
        status, messages = response.status_code, (response.json() if response.status_code == 200 else [])
    except (requests.RequestException, ValueError):
        status, messages = 0, []
    return status, messages, (time.perf_counter() - began) * 1000


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(percentile(values, 50), 1), "p95": round(percentile(values, 95), 1),
            "p99": round(percentile(values, 99), 1), "max": round(max(values), 1)}


def throughput(url: str, sizes: dict[str, Any], tag: str) -> dict[str, Any]:
    """`throughput_users` threads asking back to back, conversations of 10 questions; messages/s of 200s."""
    questions = _questions()
    users, total = sizes["throughput_users"], sizes["throughput_requests"]
    records: list[tuple[int, float]] = []
    lock = threading.Lock()

    def user(number: int) -> None:
        session = requests.Session()
        for i in range(number, total, users):
            status, _messages, ms = _post(session, url, f"{tag}-tp-{number}-{i // (10 * users)}",
                                          questions[i % len(questions)])
            with lock:
                records.append((status, ms))

    threads = [threading.Thread(target=user, args=(n,)) for n in range(users)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    ok = [ms for status, ms in records if status == 200]
    measured = {"users": users, "requests": len(records), "failed": len(records) - len(ok),
                "wall_seconds": round(wall, 2), "messages_per_second": round(len(ok) / wall, 2), "ms": _quantiles(ok)}
    print(f"  {tag}: {measured['messages_per_second']} msg/s back to back ({users} users), p50 "
          f"{measured['ms'].get('p50')} ms, p99 {measured['ms'].get('p99')} ms, {measured['failed']} failed",
          flush=True)
    return measured


def customers(url: str, log: Any, sizes: dict[str, Any]) -> dict[str, Any]:
    """Simulated customers through the load balancer: ask, think, rate, think, until the time is up."""
    questions = _questions()
    deadline = time.monotonic() + sizes["seconds"]
    think = sizes["think_seconds"]
    lock = threading.Lock()
    requests_seen: list[tuple[str, int, float]] = []  # (question | rating, status, ms)
    told: list[tuple[str, str]] = []
    thanked: list[tuple[str, int]] = []

    def customer(number: int) -> None:
        session, rng = requests.Session(), np.random.default_rng(number)
        time.sleep(rng.uniform(0, think))  # customers arrive spread out, not all in the same millisecond
        n = 0
        while time.monotonic() < deadline:
            n += 1
            sender = f"customer-{number}-{n // 10}"
            status, messages, ms = _post(session, url, sender, questions[int(rng.integers(len(questions)))])
            with lock:
                requests_seen.append(("question", status, ms))
            rateable = [m for m in messages if m.get("buttons")]
            time.sleep(think)
            if not rateable or time.monotonic() >= deadline:
                continue
            payload = rateable[0]["buttons"][int(rng.integers(2))]["payload"]
            rating = json.loads(payload[len("/rate"):])
            status, messages, ms = _post(session, url, sender, payload)
            with lock:
                told.append((sender, rating["turn_id"]))
                requests_seen.append(("rating", status, ms))
                if any("Thanks" in m.get("text", "") for m in messages):
                    thanked.append((rating["turn_id"], rating["score"]))
            time.sleep(think)

    threads = [threading.Thread(target=customer, args=(n,)) for n in range(sizes["customers"])]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    lost_turns = sum(1 for sender, turn_id in told if (turn := log.turn(turn_id)) is None or turn.sender_id != sender)
    lost_ratings = sum(1 for turn_id, score in thanked if (turn := log.turn(turn_id)) is None or turn.rating != score)
    statuses = [status for _kind, status, _ms in requests_seen]
    measured = {"customers": sizes["customers"], "seconds": round(wall, 1), "think_seconds": think,
                "requests": len(requests_seen), "requests_per_second": round(len(requests_seen) / wall, 2),
                "http_5xx": sum(500 <= s < 600 for s in statuses), "no_response": statuses.count(0),
                "statuses": {str(status): statuses.count(status) for status in sorted(set(statuses))},
                "answers_shown": len(told), "ratings_thanked": len(thanked), "turns_lost": lost_turns,
                "ratings_lost": lost_ratings,
                "ms": _quantiles([ms for _k, status, ms in requests_seen if status == 200]),
                "question_ms": _quantiles([ms for k, status, ms in requests_seen if k == "question" and status == 200]),
                "rating_ms": _quantiles([ms for k, status, ms in requests_seen if k == "rating" and status == 200])}
    print(f"  customers: {measured['requests']} requests ({measured['requests_per_second']}/s), p99 "
          f"{measured['ms'].get('p99')} ms, {measured['http_5xx']} 5xx, {lost_turns} turns and {lost_ratings} "
          "ratings lost", flush=True)
    return measured


def check_scaled(result: dict[str, Any]) -> list[str]:
    problems = []
    for side in ("single", "scaled"):
        if not result.get(side, {}).get("throughput", {}).get("messages_per_second"):
            problems.append(f"{side}: no throughput measured")
    shown = result.get("scaled", {}).get("customers", {})
    if not shown.get("answers_shown"):
        problems.append("no customer was shown an answer")
    return problems


if __name__ == "__main__":
    raise SystemExit(main())
