"""One round in a process of its own (as `rsft retrain` runs it), for bench/speed.py.

    python -m bench.speed_round prepare --dir D --prompts 1000 ...   # rsft installation in D, traffic logged
    python -m bench.speed_round run --config D/rsft.yml --out D/round.json --baseline-steps 15

`prepare` logs banking77 questions through the Assistant with noisy ratings; `run` times one round (seconds per
stage, peak memory), then runs the straightforward fine-tuning loop of bench/baseline_loop.py on the same pairs.
bench/speed.py starts both from a small parent, so that `getrusage` (whose maxrss a child inherits from its
parent across fork + exec) measures the round, not the benchmark's own process.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process: getrusage maxrss, and the kernel's VmHWM for this process image."""
    hwm = next((int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmHWM:")), 0)
    return {"maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "vmhwm_mb": round(hwm / 1024, 1)}


def prepare(args: argparse.Namespace) -> int:
    import numpy as np

    from rsft_plugin import runtime
    from rsft_plugin.models import pretrained_policy
    from rsft_plugin.parts import build_parts

    from .common import load_dataset, write_json, write_world

    dataset = load_dataset("banking77", args.datasets, args.prompts, args.heldout, args.seed)
    config = write_world(args.dir, dataset.bank, dataset.heldout, json.loads(args.sections))
    with build_parts(config) as parts:
        parts.registry.set_live(parts.registry.publish(pretrained_policy(dataset.bank, config.model)).name, "bench")
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    assistant = runtime.boot(config, watch=False)
    try:
        for i, (text, label) in enumerate(dataset.traffic):
            reply = assistant.answer(f"round-{i}", None, text)
            if reply.turn_id:
                right = dataset.bank.get(reply.answer_id).topic == label
                assistant.rate(f"round-{i}", reply.turn_id, int(right) ^ int(rng.random() < args.noise))
    finally:
        runtime.shutdown()
    write_json(args.dir / "prepare.json", {"config": str(config.source), "dataset": dataset.describe(),
                                           "logged_questions": len(dataset.traffic),
                                           "feed_seconds": round(time.perf_counter() - started, 1)})
    return 0


def accepted_pairs(store: Any, round_id: int) -> list[Any]:
    """The round's training pairs rebuilt from its recorded rows, exactly as the round built them."""
    from rsft_plugin.rounds import training_pairs

    prompt_text = {e.prompt_id: e.prompt for e in store.training_examples(round_id)}
    return training_pairs((c.prompt_id, prompt_text.get(c.prompt_id) or "", c.candidate_key, c.accepted)
                          for c in store.round_candidates(round_id))


def run(args: argparse.Namespace) -> int:
    at_start = peak_memory_mb()
    from rsft_plugin.config import load_config
    from rsft_plugin.models import load_version
    from rsft_plugin.parts import build_parts
    from rsft_plugin.rounds import run_round

    from .baseline_loop import straightforward_examples_per_second

    parts = build_parts(load_config(args.config))  # this process's composition root
    config = parts.config
    after_imports = peak_memory_mb()
    started, cpu_started = time.perf_counter(), time.process_time()
    result = run_round(parts, show_bar=False)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    out: dict[str, Any] = {
        "status": result.status, "reason": result.reason, "round_id": result.round_id,
        "live_version": result.live_version, "new_version": result.new_version,
        "stage_seconds": result.stage_seconds, "wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
        "stats": {k: v for k, v in result.stats.items() if k != "acceptance_by_topic"},
        "memory_at_start": at_start, "memory_after_imports": after_imports, "memory_after_round": peak_memory_mb()}
    if result.status in ("promoted", "kept") and args.baseline_steps > 0:  # 0: the round alone
        live = load_version(parts.registry.version_path(result.live_version), config.model)
        pairs = accepted_pairs(parts.log, result.round_id)
        out["baseline"] = straightforward_examples_per_second(live, pairs, config.finetune, args.baseline_steps)
    parts.close()
    args.out.write_text(json.dumps(out, indent=1, default=str), encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.speed_round", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    first = commands.add_parser("prepare", help="write an rsft installation and log traffic into it")
    first.add_argument("--dir", required=True, type=Path)
    first.add_argument("--datasets", required=True, type=Path)
    first.add_argument("--prompts", type=int, default=1000)
    first.add_argument("--heldout", type=int, default=300)
    first.add_argument("--noise", type=float, default=0.2)
    first.add_argument("--seed", type=int, default=0)
    first.add_argument("--sections", default="{}", help="rsft.yml sections as JSON")
    second = commands.add_parser("run", help="run and time one round, then the straightforward loop")
    second.add_argument("--config", required=True, type=Path)
    second.add_argument("--out", required=True, type=Path)
    second.add_argument("--baseline-steps", type=int, default=15)
    args = parser.parse_args(argv)
    return prepare(args) if args.command == "prepare" else run(args)


if __name__ == "__main__":
    sys.exit(main())
