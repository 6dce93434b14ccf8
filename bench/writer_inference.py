"""The writer's inference copy against the plain model, in one process (rsft_plugin/generative/serving.py).

For the same questions (one bank answer each, as bench.writer_speed) and a LoRA writer (a seeded random adapter):
greedy replies of up to 48 tokens and K = 4 samples of up to 32 tokens, once the way the writer decoded before
(`model.generate` on the peft/plain module, K prefills of the prompt) and once through `Writer` (the inference
copy, one prefill shared by the K rows). Reports seconds per reply and per prompt, ms per token, whether the greedy
replies and the sampled tokens are identical, and the largest log q difference.

    python -m bench.writer_inference --out var/bench-writer-inference      # ~4 min on 2 quiet cores
    python -m bench.writer_inference --questions 2 --prompts 1             # a quick look
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
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
    results: dict[str, Any] = {"load_average": list(os.getloadavg()), "cpus": os.cpu_count(),
                               "torch": torch.__version__}
    for label, net in (("base", model), ("lora", _random_adapter(model))):
        writer = Writer(net, tokenizer, WriterSettings(time_limit_seconds=120))
        started = time.perf_counter()
        writer.inference_model()
        build = time.perf_counter() - started
        plain = _measure(writer, pairs[: args.questions], pairs[: args.prompts], plain=True)
        fast = _measure(writer, pairs[: args.questions], pairs[: args.prompts], plain=False)
        results[label] = {"inference_copy_build_seconds": round(build, 2), "plain": plain["timing"],
                          "inference_copy": fast["timing"],
                          "greedy_identical": plain["greedy"] == fast["greedy"],
                          "samples_identical": plain["tokens"] == fast["tokens"],
                          "max_abs_logq_difference": max(abs(a - b) for a, b in
                                                         zip(plain["logq"], fast["logq"], strict=True))}
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


def _measure(writer: Any, greedy_pairs: list, sample_pairs: list, plain: bool) -> dict[str, Any]:
    from unittest import mock

    from rsft_plugin.generative import writer as writer_module

    patches = [mock.patch.object(type(writer), "inference_model", lambda self: self.model),
               mock.patch.object(writer_module, "_shared_prefix_cache", lambda model, prompt, rows: None)]
    for patch in patches if plain else []:
        patch.start()
    try:
        writer.write(*greedy_pairs[0], max_new_tokens=2)  # warm-up
        started = time.perf_counter()
        replies = [writer.write(q, g) for q, g in greedy_pairs]
        write_seconds = time.perf_counter() - started
        started = time.perf_counter()
        drawn = [s for i, (q, g) in enumerate(sample_pairs)
                 for s in writer.sample(q, g, k=4, seed=i, max_new_tokens=32)]
        sample_seconds = time.perf_counter() - started
    finally:
        for patch in patches if plain else []:
            patch.stop()
    tokens = sum(r.new_tokens for r in replies)
    return {"greedy": [r.written for r in replies], "tokens": [s.token_ids for s in drawn],
            "logq": [s.logprob for s in drawn],
            "timing": {"seconds_per_reply": round(write_seconds / len(replies), 3),
                       "ms_per_new_token": round(1000 * write_seconds / max(tokens, 1), 1),
                       "new_tokens": tokens, "prompt_tokens_mean": sum(r.prompt_tokens for r in replies)
                       / len(replies),
                       "sample_seconds_per_prompt_k4_32": round(sample_seconds / len(sample_pairs), 3)}}


if __name__ == "__main__":
    raise SystemExit(main())
