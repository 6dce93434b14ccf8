"""The writer's decoding paths against each other, in one process (rsft_plugin/generative/serving.py, quantised.py).

For the same questions (one bank answer each, as bench.writer_speed) and a LoRA writer (a seeded random adapter):
greedy replies of up to 48 tokens and K = 4 samples of up to 32 tokens through four paths, interleaved question
by question (the cores are shared, so compare the paths' ratios): `plain`, the way the writer decoded first
(`model.generate` on the peft/plain module, K prefills of the whole prompt); `float32`, the inference copy without
the 4-bit decode (one prefill shared by the K rows, from the system prefix's cache); `4bit_whole_prompt`, the
inference copy with 4-bit decode steps reading the whole prompt (as served before the system prefix's cache);
`4bit`, the inference copy as served (decode steps from the GGUF's blocks, the prompt read from the system
prefix's or a grounding head's cache on). Every path but `plain` writes greedy replies with the writer's own decode
loop (decoding.py). Reports seconds per reply and per prompt, ms per token, whether each path's greedy replies and
sampled tokens are identical to `plain`'s, and the largest log q difference.

    python -m bench.writer_inference --out var/bench-writer-inference      # ~6 min on 2 quiet cores
    python -m bench.writer_inference --questions 2 --prompts 1             # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.writer_speed import QUESTIONS

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "var" / "bench-writer-inference")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("RSFT_BASE_CACHE",
                                                                          REPO / "var" / "base-models")))
    parser.add_argument("--questions", type=int, default=8, help="greedy replies per writer (1-8)")
    parser.add_argument("--prompts", type=int, default=3, help="prompts sampled K = 4 times per writer (1-8)")
    args = parser.parse_args(argv)

    import torch

    from rsft_plugin.answer_bank import load_answer_bank
    from rsft_plugin.generative.checkpoint import ensure_checkpoint, load_base
    from rsft_plugin.generative.settings import WriterSettings
    from rsft_plugin.generative.writer import Writer

    bank = load_answer_bank(REPO / "data" / "answers.yml")
    pairs = [(q, [bank.get(topic).text]) for q, topic in QUESTIONS]
    model, tokenizer = load_base(ensure_checkpoint(args.cache))
    results: dict[str, Any] = {"load_average_before": list(os.getloadavg()), "cpus": os.cpu_count(),
                               "torch": torch.__version__}
    for label, net in (("base", model), ("lora", _random_adapter(model))):
        writer = Writer(net, tokenizer, WriterSettings(time_limit_seconds=120))
        paths, build_seconds = _paths(net)
        runs = _measure(writer, paths, pairs[: args.questions], pairs[: args.prompts])
        results[label] = {"inference_copy_build_seconds": build_seconds, "decode_4bit_bytes": _quantised_bytes(
            paths["4bit"]), **{name: run["timing"] for name, run in runs.items()}}
        for name in ("float32", "4bit_whole_prompt", "4bit"):
            results[label][name].update(_agreement(runs["plain"], runs[name]))
    results["load_average_after"] = list(os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "writer_inference.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=1))
    return 0


def _random_adapter(model: Any) -> Any:
    """A LoRA writer (r 8 on q/v, as a round trains) with seeded random weights, so the adapter changes replies."""
    import torch
    from peft import LoraConfig, get_peft_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        tuned = get_peft_model(copy.deepcopy(model), LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05,
                                                                target_modules=["q_proj", "v_proj"]))
        for name, param in tuned.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.02)
    tuned.eval()
    tuned.requires_grad_(False)
    return tuned


def _paths(model: Any) -> tuple[dict[str, Any], dict[str, float]]:
    """plain: the module itself; float32: the inference copy without 4-bit decoding; 4bit: the copy as served
    (4bit_whole_prompt: the same copy; `_using` turns the system prefix's cache off for it)."""
    from unittest import mock

    from rsft_plugin.generative import serving

    seconds = {}
    started = time.perf_counter()
    with mock.patch.object(serving, "decode_weights", lambda base, layers: {}):
        float32 = serving.build_inference_copy(model)
    seconds["float32"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    quantised = serving.build_inference_copy(model)
    seconds["4bit"] = round(time.perf_counter() - started, 2)
    return {"plain": model, "float32": float32, "4bit_whole_prompt": quantised, "4bit": quantised}, seconds


def _quantised_bytes(model: Any) -> int:
    """Bytes of the blocks the 4-bit decode reads (each distinct block tensor once)."""
    blocks = {id(m.decode.blocks): m.decode.blocks for m in model.modules() if getattr(m, "decode", None)}
    return sum(b.nbytes for b in blocks.values())


def _measure(writer: Any, paths: dict[str, Any], greedy_pairs: list, sample_pairs: list) -> dict[str, Any]:
    """Every path on every question in turn (so load changes hit all paths alike)."""
    runs = {name: {"greedy": [], "tokens": [], "logq": [], "write": 0.0, "sample": 0.0, "new": 0}
            for name in paths}
    for name in paths:  # warm-up
        with _using(writer, paths[name], name):
            writer.write(*greedy_pairs[0], max_new_tokens=2)
    for question, grounding in greedy_pairs:
        for name, run in runs.items():
            with _using(writer, paths[name], name):
                started = time.perf_counter()
                reply = writer.write(question, grounding)
                run["write"] += time.perf_counter() - started
            run["greedy"].append(reply.written)
            run["new"] += reply.new_tokens
    for i, (question, grounding) in enumerate(sample_pairs):
        for name, run in runs.items():
            with _using(writer, paths[name], name):
                started = time.perf_counter()
                drawn = writer.sample(question, grounding, k=4, seed=i, max_new_tokens=32)
                run["sample"] += time.perf_counter() - started
            run["tokens"] += [s.token_ids for s in drawn]
            run["logq"] += [s.logprob for s in drawn]
    for run in runs.values():
        run["timing"] = {"seconds_per_reply": round(run["write"] / len(greedy_pairs), 3),
                         "ms_per_new_token": round(1000 * run["write"] / max(run["new"], 1), 1),
                         "new_tokens": run["new"],
                         "sample_seconds_per_prompt_k4_32": round(run["sample"] / len(sample_pairs), 3)}
    return runs


def _agreement(reference: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    return {"greedy_identical_to_plain": reference["greedy"] == run["greedy"],
            "samples_identical_to_plain": reference["tokens"] == run["tokens"],
            "max_abs_logq_difference": max(abs(a - b) for a, b in zip(reference["logq"], run["logq"], strict=True))}


@contextlib.contextmanager
def _using(writer: Any, model: Any, path: str) -> Iterator[None]:
    """The writer decodes with `model`; `plain` also gives each sampled row its own prefill of the whole prompt and
    decodes greedily with `generate`, as it once did; `4bit_whole_prompt` reads the whole prompt (one prefill shared
    by the K rows), without the system prefix's cache (nor a grounding head's)."""
    from unittest import mock

    from rsft_plugin.generative import decoding
    from rsft_plugin.generative import writer as writer_module

    shared = writer_module._shared_prefix_cache
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(type(writer), "inference_model", lambda self: model))
        if path == "plain":
            stack.enter_context(mock.patch.object(writer_module, "_shared_prefix_cache",
                                                  lambda model, prompt, rows, system=None: None))
            stack.enter_context(mock.patch.object(decoding, "supports", lambda model: False))
        elif path == "4bit_whole_prompt":
            stack.enter_context(mock.patch.object(writer_module, "_shared_prefix_cache",
                                                  lambda model, prompt, rows, system=None: shared(model, prompt, rows)))
        yield


if __name__ == "__main__":
    raise SystemExit(main())
