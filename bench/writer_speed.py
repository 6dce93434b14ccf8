"""Speed of the generative kind's writer (SmolLM2-135M-Instruct) on this machine, in one process.

Measures: converting the GGUF (only when the cache is empty, or with --convert into a scratch cache), loading the
cached checkpoint, greedy replies of up to 48 new tokens to bank questions (p50/p99 seconds, tokens/s), sampling
K replies per question with their log q, and LoRA steps on a batch of accepted pairs (seconds per step, tokens/s;
of distinct prompts, and of several replies per prompt as a round accepts them).

    python -m bench.writer_speed --out var/bench-writer          # ~3-5 min on 2 busy cores
    python -m bench.writer_speed --smoke --out var/bench-writer  # seconds-long
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

QUESTIONS = [
    ("Can I return it after 3 weeks if I opened it?", "return_policy"),
    ("How much does express shipping cost?", "shipping_costs"),
    ("I forgot my password, what do I do?", "reset_password"),
    ("When will I get my refund?", "refund_status"),
    ("Can I cancel my order?", "cancel_order"),
    ("Do you ship abroad?", "international_shipping"),
    ("How long is the warranty?", "warranty"),
    ("How do I talk to a person?", "human_agent"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "var" / "bench-writer")
    parser.add_argument("--cache", type=Path, default=REPO / "var" / "base-models")
    parser.add_argument("--convert", action="store_true", help="also time a conversion into a scratch cache")
    parser.add_argument("--smoke", action="store_true", help="2 questions, 16 tokens, 1 LoRA step")
    args = parser.parse_args(argv)

    import torch

    from rsft_plugin.answer_bank import load_answer_bank
    from rsft_plugin.generative.checkpoint import ensure_checkpoint, load_base
    from rsft_plugin.generative.faithfulness import is_faithful
    from rsft_plugin.generative.lora import WriterExample, finetune_writer
    from rsft_plugin.generative.settings import LoraTraining, WriterSettings
    from rsft_plugin.generative.writer import Writer

    questions = QUESTIONS[:2] if args.smoke else QUESTIONS
    new_tokens = 16 if args.smoke else 48
    bank = load_answer_bank(REPO / "data" / "answers.yml")
    results: dict = {"machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version(),
                                 "torch": torch.__version__, "load_average": list(__import__("os").getloadavg())}}

    started = time.monotonic()
    checkpoint = ensure_checkpoint(args.cache)
    results["ensure_checkpoint_seconds"] = time.monotonic() - started
    results["convert_seconds_recorded"] = checkpoint.convert_seconds
    if args.convert:
        with tempfile.TemporaryDirectory() as scratch:
            started = time.monotonic()
            ensure_checkpoint(scratch)
            results["convert_seconds"] = time.monotonic() - started

    loads = []
    for _ in range(3):
        started = time.monotonic()
        load_base(checkpoint)
        loads.append(time.monotonic() - started)
    results["load_seconds"] = {"min": min(loads), "median": float(np.median(loads))}

    writer = Writer.from_checkpoint(checkpoint, WriterSettings(max_new_tokens=new_tokens, time_limit_seconds=120))
    grounding = {q: [bank.get(topic).text] for q, topic in questions}
    writer.write(*questions[0][:1], grounding[questions[0][0]], max_new_tokens=4)  # warm-up
    replies = []
    for question, _ in questions:
        reply = writer.write(question, grounding[question])
        replies.append({"question": question, "text": reply.text, "fallback": reply.fallback, "reason": reply.reason,
                        "seconds": reply.seconds, "prompt_tokens": reply.prompt_tokens,
                        "new_tokens": reply.new_tokens, "faithful": is_faithful(reply.text, grounding[question])})
    seconds = np.array([r["seconds"] for r in replies])
    results["reply"] = {"max_new_tokens": new_tokens, "p50_seconds": float(np.percentile(seconds, 50)),
                        "p99_seconds": float(np.percentile(seconds, 99)),
                        "new_tokens_per_second": sum(r["new_tokens"] for r in replies) / float(seconds.sum()),
                        "mean_prompt_tokens": float(np.mean([r["prompt_tokens"] for r in replies])),
                        "replies": replies}

    k = 2 if args.smoke else 4
    sampled_tokens, started = 0, time.monotonic()
    samples = []
    for i, (question, _) in enumerate(questions[:2]):
        drawn = writer.sample(question, grounding[question], k=k, seed=i, max_new_tokens=new_tokens)
        sampled_tokens += sum(len(s.token_ids) for s in drawn)
        samples += [{"question": question, "text": s.text, "logprob": s.logprob, "finished": s.finished,
                     "faithful": is_faithful(s.text, grounding[question])} for s in drawn]
    sample_seconds = time.monotonic() - started
    results["sample"] = {"prompts": 2, "k": k, "seconds_per_prompt": sample_seconds / 2,
                         "new_tokens_per_second": sampled_tokens / sample_seconds, "samples": samples}

    batch = 2 if args.smoke else 8
    examples = [WriterExample(q, tuple(grounding[q]), bank.get(t).text.split(". ")[0] + ".")
                for q, t in questions] * (batch // len(questions) + 1)
    lora = finetune_writer(writer, examples[:batch], LoraTraining(batch_size=batch, max_epochs=1 if args.smoke else 3,
                                                                   patience=3, val_fraction=0.0), show_bar=False)
    results["lora"] = {"batch": batch, "steps": lora.steps, "seconds_per_step": lora.seconds / lora.steps,
                       "tokens_per_second": lora.tokens_per_second, "trainable_parameters": lora.trainable_parameters,
                       "history": lora.history}
    # as a round accepts them: several replies per prompt (training reads each prompt once per batch)
    shared = [WriterExample(q, tuple(grounding[q]), f"{bank.get(t).text.split('. ')[0]}. ({n + 1})")
              for q, t in questions[:2] for n in range(batch // 2)]
    lora = finetune_writer(writer, shared, LoraTraining(batch_size=batch, max_epochs=1 if args.smoke else 3,
                                                        patience=3, val_fraction=0.0), show_bar=False)
    results["lora_shared_prompts"] = {"batch": batch, "prompts": 2, "steps": lora.steps,
                                      "seconds_per_step": lora.seconds / lora.steps,
                                      "tokens_per_second": lora.tokens_per_second}
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "writer_speed.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    summary = {key: value for key, value in results.items() if key not in ("reply", "sample", "lora")}
    summary["reply"] = {k: v for k, v in results["reply"].items() if k != "replies"}
    summary["sample"] = {k: v for k, v in results["sample"].items() if k != "samples"}
    summary["lora"] = {k: v for k, v in results["lora"].items() if k != "history"}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
