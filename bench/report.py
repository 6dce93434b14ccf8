"""Markdown tables from bench/results/*.json, written into docs/benchmarks.md between marker comments.

    python -m bench.report                                    # refresh docs/benchmarks.md from bench/results
    python -m bench.report --results DIR --out tables.md      # render to a file of its own (bench-smoke)

Only the regions between `<!-- bench:quality:start -->` / `<!-- bench:quality:end -->` (and the same for
`speed`, `out_of_scope`, `feedback` and `generative`) are replaced; the prose around them is written by hand.
Numbers are never typed in: they come from the JSON the benchmarks wrote.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from rsft_plugin.generative.budget import FIT_ROOM

from .common import DEFAULT_RESULTS, REPO, RULES
from .feedback import summarize as summarize_feedback
from .gate_truth import GATES, total

DOC = REPO / "docs" / "benchmarks.md"
LABELS = {
    "zero_shot": "(a) zero-shot", "naive": "(b) naive, every served answer", "threshold": "(c) rounds: threshold",
    "statistical": "(d) rounds: statistical (per prompt)",
    "statistical_global": "(d′) rounds: statistical, one envelope per round",
    "best_of_n": "(e) rounds: best_of_n", "oracle": "(f) oracle labels",
    "rasa_diet": "(g) Rasa DIETClassifier", "rasa_response_selector": "(g) Rasa ResponseSelector",
}  # a rule without a label here (a newly registered one) is labelled "rounds: NAME"


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}"


def num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    marks = [":--" if a == "l" else "--:" for a in align]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |",
            *["| " + " | ".join(row) + " |" for row in rows]]


def _meta_line(meta: dict[str, Any]) -> str:
    machine, git = meta["machine"], meta["git"]
    dirty = " (with uncommitted changes)" if git.get("dirty") else ""
    load = machine.get("load_average_at_start")
    return (f"Run {meta['date']} on `{machine.get('host')}` ({machine.get('cpus')} × {machine.get('cpu_model')}, "
            f"{machine.get('memory_gb')} GB), commit `{git.get('commit', '')[:10]}`{dirty}, load average at start "
            f"{load[0] if load else '?'}; wall time {num(meta.get('wall_seconds', 0) / 60)} min. "
            f"Command: `{meta['command']}`.")


def quality_markdown(result: dict[str, Any], image_prefix: str) -> str:
    params = result["meta"]["params"]
    lines = [_meta_line(result["meta"]), ""]
    lines += _summary(result)
    lines += _gate_vs_truth(result)
    for name, entry in result["datasets"].items():
        info = entry["dataset"]
        zero = entry.get("zero_shot", {}).get("accuracy")
        lines += ["", f"#### {name}: {info['intents']} intents, {info['traffic']} traffic / {info['heldout']} "
                      f"held-out questions", "",
                  f"Source `{info['source']}`; answer bank `{info['answer_bank']}`; split: {info['split']}. "
                  f"Zero-shot held-out accuracy **{pct(zero)} %**.", "",
                  f"![accuracy per round, {name}]({image_prefix}quality_{name}.png)"]
        for noise in params["noise"]:
            lines += ["", f"*{name}, ratings flipped with probability {noise:g}*", ""]
            lines += _method_table(entry, noise, params["rounds"])
    return "\n".join(lines)


def _final(method: dict[str, Any] | None) -> float | None:
    if not method:
        return None
    return method["rounds"][-1]["accuracy"] if "rounds" in method else method.get("accuracy")


def _summary(result: dict[str, Any]) -> list[str]:
    params = result["meta"]["params"]
    keys = ["naive", *RULES, "oracle", "rasa_diet", "rasa_response_selector"]
    header = ["dataset", "noise", "zero-shot", "naive", *RULES, "oracle", "Rasa DIET", "Rasa RS"]
    rows = []
    for name, entry in result["datasets"].items():
        for noise in params["noise"]:
            methods = entry["methods"]
            cells = [pct(_final(methods.get(f"{k}@{noise:g}") or methods.get(k))) for k in keys]
            best_rule = max((_final(methods.get(f"{r}@{noise:g}")) or 0 for r in RULES), default=0)
            cells = [f"**{c}**" if k in RULES and _final(methods.get(f"{k}@{noise:g}")) == best_rule else c
                     for k, c in zip(keys, cells, strict=True)]
            rows.append([name, f"{noise:g}", pct(entry.get("zero_shot", {}).get("accuracy")), *cells])
    return [f"Held-out top-1 accuracy (%) after the last of {params['rounds']} rounds (Rasa: trained once on all "
            "traffic with gold labels); the best rule in bold.", "",
            *_table(header, rows, "ll" + "r" * (len(header) - 2))]


def _gate_vs_truth(result: dict[str, Any]) -> list[str]:
    """Per dataset and noise: how often the default (statistical) gate and the old threshold gate refused a round
    that was really >= 1 point better on the truth set, or promoted one that was really >= 1 point worse."""
    params = result["meta"]["params"]
    rows = []
    for name, entry in result["datasets"].items():
        for noise in params["noise"]:
            summaries = [m["gate_vs_truth"] for k, m in entry["methods"].items()
                         if k.endswith(f"@{noise:g}") and "gate_vs_truth" in m]
            if not summaries:
                continue
            t = total(summaries)
            rows.append([name, f"{noise:g}", str(t["rounds"]), str(t["really_better"]), str(t["really_worse"]),
                         *[f"{t[g]['promoted']} / {t[g]['refused_really_better']} / {t[g]['promoted_really_worse']}"
                           for g in GATES],
                         f"{t['better_not_ahead']} / {t['worse_ahead']}" if "worse_ahead" in t else "–"])
    if not rows:
        return []
    truth = {n: e["dataset"].get("truth") for n, e in result["datasets"].items()}
    return ["", f"**The gate against truth.** Every round of every rule, judged on questions that are neither "
                f"traffic nor held-out ({', '.join(f'{n}: {k}' for n, k in truth.items())}): really better / worse "
                "= the candidate's truth accuracy is at least 1 point above / below its parent's. Each gate column: "
                "promoted / refused but really better / promoted but really worse (bench/gate_truth.py; the old "
                "gate is the threshold rule before the statistical one). *Held-out disagrees*: really better rounds "
                "that were not ahead on the held-out questions / really worse ones that were ahead — mistakes no gate "
                "reading those questions can avoid.", "",
            *_table(["dataset", "noise", "rounds", "really better", "really worse", "default gate", "old gate",
                     "held-out disagrees"], rows, "ll" + "r" * 6)]


def _method_table(entry: dict[str, Any], noise: float, rounds: int) -> list[str]:
    methods = entry["methods"]
    zero = entry.get("zero_shot", {}).get("accuracy")
    header = ["method", *[f"r{i}" for i in range(1, rounds + 1)], "Δ vs zero-shot", "accepted (mean)",
              "precision (mean)", "served acc. (mean)", "default gate", "s / round"]
    rows = [[LABELS["zero_shot"], *[pct(zero)] * rounds, "0.0", "–", "–", "–", "–", "–"]]
    for key in ("naive", *RULES, "oracle"):
        method = methods.get(f"{key}@{noise:g}") or methods.get(key)
        if not method:
            continue
        runs = method["rounds"]
        accuracies = [pct(r["accuracy"]) for r in runs] + ["–"] * (rounds - len(runs))
        gate = "".join({True: "✓", False: "✗", None: "·"}[r.get("default_gate_promotes")] for r in runs) \
            if key in RULES else "–"
        seconds = _mean([r["round_seconds"] + (r.get("feed_seconds") or 0) for r in runs])
        label = LABELS.get(key, f"rounds: {key}") + (" (noise-free)" if key in ("naive", "oracle") else "")
        rows.append([label, *accuracies, f"{100 * (runs[-1]['accuracy'] - zero):+.1f}",
                     pct(_mean([r.get("acceptance_rate") for r in runs])),
                     pct(_mean([r.get("precision") for r in runs])),
                     pct(_mean([r.get("served_accuracy") for r in runs])), gate, num(seconds, 0)])
    for key in ("rasa_diet", "rasa_response_selector"):
        method = methods.get(key)
        if method:
            rows.append([LABELS[key], *["–"] * (rounds - 1), pct(method["accuracy"]),
                         f"{100 * (method['accuracy'] - zero):+.1f}", "–", "100.0", "–", "–",
                         f"{num(method['train_seconds'], 0)} (train)"])
    return _table(header, rows)


def speed_markdown(result: dict[str, Any], image_prefix: str) -> str:
    lines = [_meta_line(result["meta"]), ""]
    over = result.get("overhead")
    if over:
        lines += ["**Answer time in one process** (the same questions, interleaved, after a warm-up pass; ms):", ""]
        rows = []
        for threads, numbers in (over.get("by_threads") or {str(over.get("threads", "?")): over}).items():
            for name, key, ratio in (
                    ("bare sentence-transformers encode + matmul", "bare", "1.00"),
                    ("policy.answer + render (= a turn's `latency_ms`)", "model",
                     num(numbers["model_over_bare_p50"], 2)),
                    ("Assistant.answer (+ SQLite insert of the turn)", "assistant",
                     num(numbers["assistant_over_bare_p50"], 2))):
                rows.append([name, threads, num(numbers[f"{key}_ms"]["p50"]), num(numbers[f"{key}_ms"]["p95"]),
                             num(numbers[f"{key}_ms"]["mean"]), ratio])
        lines += _table(["path", "torch threads", "p50", "p95", "mean", "p50 / bare p50"], rows, "lrrrrr")
        lines += ["", f"{over['queries']} questions per setting; both paths chose the same answer for "
                      f"{pct(over['same_answer_share'], 0)} % of them. The action server runs with torch's default "
                      f"({over.get('default_threads', '?')} threads)."]
    load = result.get("load")
    if load:
        lines += ["", "**End to end over the REST channel** (Rasa → action server → model → SQLite; ms):", ""]
        rows = [[str(level["users"]), str(level["requests"]), str(level["failed"]), num(level["messages_per_second"]),
                 num(level["rest_ms"]["p50"], 0), num(level["rest_ms"]["p95"], 0), num(level["rest_ms"]["p99"], 0),
                 num(level["action_ms"]["p50"]), num(level["action_ms"]["p95"]), num(level["action_ms"]["p99"])]
                for level in load["levels"]]
        lines += _table(["users", "requests", "failed", "msg/s", "REST p50", "REST p95", "REST p99",
                         "answer p50", "answer p95", "answer p99"], rows)
        lines += ["", f"*answer* = the action server's own `latency_ms` of the logged turns. At one user, its p50 is "
                      f"{num(load.get('action_p50_over_bare_p50'), 2)} × the bare encode + matmul p50 measured above.",
                  "", f"![latency and throughput]({image_prefix}speed_latency.png)"]
    long = result.get("conversation_length")
    if long:
        lines += ["", "**One long conversation** (one user, back to back; REST round trip p50 per block of turns, ms; "
                      "the load levels above use conversations of "
                      f"{result['meta']['params'].get('turns_per_conversation', '?')} questions):", ""]
        lines += _long_conversation_table(long)
    swap = result.get("hot_swap")
    if swap:
        lines += ["", f"**Hot swap while {swap['users']} users chat** (a new version published and made live at "
                      f"t = 0; the action server polls the pointer every {swap['poll_seconds']} s):", ""]
        rows = [[str(swap["requests"]), str(swap["failed"]), str(swap["slow_over_1s"]),
                 str(swap.get("not_answered_by_the_model", 0)), num(swap["publish_seconds"], 2),
                 num(swap["first_new_answer_s"], 2), num(swap["all_new_after_s"], 2),
                 num(swap["rest_ms_before_flip"]["p99"], 0), num(swap["rest_ms_after_flip"]["p99"], 0)]]
        lines += _table(["requests", "failed", "slow (> 1 s)", "not for the model¹", "publish s",
                         "first new answer s", "all answers new after s", "p99 before ms", "p99 after ms"], rows)
        lines += ["", "¹ questions Rasa's NLU routed elsewhere (greeting, human hand-off): answered, but not by the "
                      "response model, so they show no version.", "",
                  f"![hot swap timeline]({image_prefix}speed_hot_swap.png)"]
    round_numbers = result.get("round")
    if round_numbers and round_numbers.get("stage_seconds"):
        stats = round_numbers["stats"]
        tuned = stats.get("finetune") or {}
        lines += ["", f"**One round** ({round_numbers['rule']} rule) on {round_numbers['logged_questions']} logged "
                      f"banking77 questions → {stats.get('prompts')} prompts ({stats.get('trainable_prompts')} for "
                      f"training) × K={round_numbers['k']} = {stats.get('candidates')} candidates, "
                      f"{stats.get('accepted')} accepted ({pct(stats.get('acceptance_rate'))} %), status "
                      f"`{round_numbers['status']}`:", ""]
        stages = round_numbers["stage_seconds"]
        lines += _table(["stage", *stages, "total"], [["seconds", *[num(v) for v in stages.values()],
                                                       num(sum(stages.values()))]])
        lines += ["", f"Wall {num(round_numbers['wall_seconds'])} s, CPU {num(round_numbers['cpu_seconds'])} s; "
                      f"peak memory of the round's process **{num(round_numbers['peak_memory_mb'], 0)} MB** "
                      f"(getrusage maxrss; {num(round_numbers['memory_after_imports']['maxrss_mb'], 0)} MB after "
                      "imports).", ""]
        if round_numbers.get("speedup_vs_baseline"):
            base = round_numbers["baseline"]
            lines += _table(["fine-tune", "examples/s", "ratio to the straightforward loop"], [
                ["library, training steps (as `finetune` reports it)",
                 num(round_numbers["finetune_examples_per_second"]), num(round_numbers["speedup_vs_baseline"], 2)],
                ["library, whole stage (epochs × pairs / stage seconds)",
                 num(round_numbers["finetune_stage_examples_per_second"]),
                 num(round_numbers["stage_speedup_vs_baseline"], 2)],
                [f"straightforward loop, bank re-encoded every step ({base['steps']} steps)",
                 num(round_numbers["baseline_examples_per_second"]), "1.00"]])
            lines += ["", f"Fine-tune: {tuned.get('epochs')} epochs (best {tuned.get('best_epoch')}), "
                          f"{tuned.get('train_pairs')} training / {tuned.get('val_pairs')} validation pairs."]
        lines += ["", f"![round stages]({image_prefix}speed_round_stages.png)"]
    return "\n".join(lines)


def out_of_scope_markdown(result: dict[str, Any], image_prefix: str) -> str:
    sizes, chosen = result["sizes"], result["model"].get("configured_min_score")
    lines = [_meta_line(result["meta"]), "",
             f"Pretrained retrieval policy; {sizes['out_of_scope']} out-of-scope lines (`data/out_of_scope.csv`), "
             f"{sizes['in_scope']} in-scope golden questions ({sizes['in_scope_correct']} answered correctly "
             f"without a threshold). Shares in %; the configured `model.min_score` in bold.", ""]
    rows = [[f"**{r['threshold']:g}**" if r["threshold"] == chosen else f"{r['threshold']:g}",
             pct(r["out_of_scope_caught"]), pct(r["in_scope_refused"]), pct(r["correct_lost"]),
             pct(r["wrong_caught"]), pct(r["accuracy_answered"])] for r in result["sweep"]]
    lines += _table(["threshold", "out-of-scope caught", "in-scope refused", "correct answers lost",
                     "wrong answers caught", "accuracy of the answered"], rows)
    quantiles = result["score_quantiles"]
    top = result.get("highest_out_of_scope") or []
    lines += ["", "Best-cosine 10th / 50th / 90th percentiles: out-of-scope "
                  f"{' / '.join(num(q, 2) for q in quantiles['out_of_scope'])}, in-scope "
                  f"{' / '.join(num(q, 2) for q in quantiles['in_scope'])}. Highest-scoring out-of-scope lines: "
                  + "; ".join(f"\"{t['question']}\" ({num(t['score'], 2)})" for t in top[:4]) + ".", "",
              f"![out-of-scope curve]({image_prefix}out_of_scope.png)"]
    return "\n".join(lines)


def _truth_gain_cell(summary: dict[str, Any]) -> str:
    """`+12.3 (1.5)` in points, or – for runs recorded without a truth judgement in every round."""
    if "truth_gain_mean" not in summary:
        return "–"
    return f"{100 * summary['truth_gain_mean']:+.1f} ({pct(summary['truth_gain_spread'])})"


def feedback_markdown(result: dict[str, Any], image_prefix: str) -> str:
    """Per dataset: each arm at each noise level — final accuracy mean ± spread over seeds, gain over zero-shot,
    served accuracy within one click, and the default gate's mistakes against truth."""
    params = result["meta"]["params"]
    merged = [f"`{m['command']}` (commit `{m['git'].get('commit', '')[:10]}`, "
              f"{num(m['wall_seconds'] / 60) if 'wall_seconds' in m else '–'} min)"
              for m in result["meta"].get("merged", [])]
    lines = [_meta_line(result["meta"]) + (" Runs added later: " + "; ".join(merged) + "." if merged else ""), "",
             f"{params['sizes']['rounds']} rounds × {params['sizes']['traffic'] // params['sizes']['rounds']} "
             f"questions, rule `{params['rule']}`, seeds {', '.join(map(str, params['seeds']))}; accuracy on "
             f"{params['sizes']['heldout']} held-out questions (golden: its own held-out split), in %. "
             "*spread* = max − min over the seeds; "
             "*within one click* = served directly or via a pick under \"Was it one of these?\" (mean over rounds); "
             "*gate mistakes* = rounds the default gate would have refused of those ≥ 1 point better on the truth "
             "set / promoted of those ≥ 1 point worse; *truth-set gain* = zero-shot to the last round on the truth "
             f"set ({params['sizes'].get('truth', '–')} further questions where the dataset has them; golden: "
             "bench/golden_truth.csv), mean (spread).", ""]
    for name, entry in result["datasets"].items():
        rows = []
        order = list(params["arms"])
        # summarised again from the runs: a stored summary may predate a column (runs merged over sessions)
        for summary in sorted(summarize_feedback(entry["runs"]).values(),
                              key=lambda s: (s["noise"], order.index(s["arm"]))):
            gate, judged = summary["gate_vs_truth"].get("default", {}), summary["gate_vs_truth"]
            rows.append([summary["arm"], f"{summary['noise']:.0%}", str(len(summary["seeds"])),
                         pct(summary["zero_shot_mean"]),
                         f"{pct(summary['final_mean'])} ({pct(summary['final_spread'])})",
                         f"{100 * summary['gain_mean']:+.1f}", pct(summary["within_one_click_mean"]),
                         f"{gate.get('refused_really_better', '–')} of {judged.get('really_better', '–')} / "
                         f"{gate.get('promoted_really_worse', '–')} of {judged.get('really_worse', '–')}",
                         _truth_gain_cell(summary)])
        lines += [f"**{name}**", ""] + _table(["arm", "wrong ratings", "seeds", "zero-shot", "final (spread)", "gain",
                                               "within one click", "gate mistakes", "truth-set gain (spread)"],
                                              rows) + [""]
    lines.append(f"![feedback arms]({image_prefix}feedback.png)")
    return "\n".join(lines)


def scaled_markdown(result: dict[str, Any], _image_prefix: str) -> str:
    """bench/scaled.py: back-to-back throughput single vs scaled, then simulated customers through HAProxy."""
    sizes = result["meta"]["params"]
    single, scaled = result["single"], result["scaled"]
    rows = [[label, str(side["throughput"]["users"]), num(side["throughput"]["messages_per_second"]),
             num(side["throughput"]["ms"].get("p50"), 0), num(side["throughput"]["ms"].get("p99"), 0),
             str(side["throughput"]["failed"]), num(side["start_seconds"], 0)]
            for label, side in (("one Rasa + one action server (SQLite)", single),
                                (f"{sizes['rasa_servers']} Rasa + {sizes['action_servers']} action servers behind "
                                 "HAProxy (PostgreSQL, Redis)", scaled))]
    lines = [_meta_line(result["meta"]), "", "**Back-to-back throughput** (no think time):", ""]
    lines += _table(["stack", "users", "messages/s", "p50 ms", "p99 ms", "failed", "start s"], rows, "lrrrrrr")
    lines += ["", f"Scaled / single: **{num(result.get('throughput_scaled_over_single'), 2)}×**.", ""]
    shown = scaled.get("customers")
    if shown:
        lines += [f"**{shown['customers']} customers** through the load balancer for {num(shown['seconds'], 0)} s, "
                  f"{num(shown['think_seconds'])} s think time before each rating and each next question:", ""]
        lines += _table(["requests", "per s", "p50 ms", "p95 ms", "p99 ms", "5xx", "no response", "answers shown",
                         "turns lost", "ratings lost"],
                        [[str(shown["requests"]), num(shown["requests_per_second"]), num(shown["ms"].get("p50"), 0),
                          num(shown["ms"].get("p95"), 0), num(shown["ms"].get("p99"), 0), str(shown["http_5xx"]),
                          str(shown["no_response"]), str(shown["answers_shown"]), str(shown["turns_lost"]),
                          str(shown["ratings_lost"])]], "r" * 10)
    return "\n".join(lines)


def round_scale_markdown(result: dict[str, Any], _image_prefix: str) -> str:
    """bench/round_scale.py: filling a PostgreSQL log with synthetic traffic, then one round on it."""
    filled, numbers, sizes = result["fill"], result["round"], result["sizes"]
    stats, stages = numbers.get("stats", {}), numbers["stage_seconds"]
    lines = [_meta_line(result["meta"]), "",
             f"**Fill**: {filled['turns']:,} turns ({filled['distinct_questions']:,} distinct banking77 questions, "
             f"cycled; {filled['rows']['ratings']:,} ratings, {filled['rows']['signals']:,} implicit signals) in "
             f"{num(filled['fill_seconds'])} s: {num(filled['answer_seconds'])} s answering each distinct question "
             f"once, {num(filled['logging_seconds'])} s logging through the log interface "
             f"({num(filled['turns_per_second'], 0)} turns/s, {filled['workers']} connections).", "",
             f"**One round** ({numbers['status']}: {numbers['reason']}), product defaults"
             + (f" except {json.dumps(result['config_sections'])}" if result.get("config_sections") else "") + ":",
             ""]
    lines += _table([*stages, "total", "peak memory MB"],
                    [[*(num(s, 1) for s in stages.values()), num(numbers["wall_seconds"], 1),
                      num(result["peak_memory_mb"], 0)]], "r" * (len(stages) + 2))
    lines += ["", f"Prompts {stats.get('prompts')} (trainable {stats.get('trainable_prompts')}, kept out for the "
                  f"gate {stats.get('gate_prompts')}); rated turns read by score: {stats.get('rated_turns_used')}; "
                  f"signals read: {stats.get('signals_used')}; rated share {pct(sizes['rated_share'], 0)} %, "
                  f"wrong ratings {pct(sizes['noise'], 0)} %.", "",
              "The log reads of a round, each timed alone on the filled log:", ""]
    lines += _table(["read", "rows", "seconds"], [[_read_label(name), f"{read['rows']:,}", num(read["seconds"], 2)]
                                                  for name, read in filled.get("round_reads", {}).items()], "lrr")
    return "\n".join(lines)


def _read_label(name: str) -> str:
    """"rated_turns() (score, gate)" -> "`rated_turns()` (score, gate)": the call as code, the stages as text."""
    call, _, stages = name.partition(") (")
    return f"`{call})` ({stages}" if stages else f"`{name}`"


def _similarity_bounds(reject: dict[str, Any]) -> str:
    """The generative rounds' similarity thresholds as the run's sections gave them (older runs: s_min only)."""
    if "s_min_written" not in reject:
        return f"similarity ≥ {reject['s_min']}"
    return (f"written replies: similarity ≥ {reject['s_min_written']}; the retriever's own draws: similarity ≥ "
            f"{reject.get('s_min', 0.8)}")


def _writer_epochs(rounds: list[dict[str, Any]]) -> str:
    """The writer's LoRA epochs per round as recorded (runs before 2026-12-01 evening did not record them)."""
    epochs = [str(r["writer_finetune"]["epochs"]) for r in rounds if (r.get("writer_finetune") or {}).get("epochs")]
    return f"LoRA epochs per round: {', '.join(epochs)}" if epochs else "LoRA epochs not recorded"


def _fitted(result: dict[str, Any]) -> str:
    """How the reply budget was set: runs before `fit_grounding` existed record no such setting (a fixed budget)."""
    if result["generative"].get("settings", {}).get("fit_grounding"):
        return f" or the grounding answer's length + {FIT_ROOM} where longer (`fit_grounding`)"
    return ""


def generative_markdown(result: dict[str, Any], image_prefix: str) -> str:
    """The writer vs retrieval before and after the rounds (three measures on each test set: bitext and golden, or
    golden alone where the rounds ran on it), then each generative round's cost by stage, tokens/s and peak memory."""
    sizes, sections = result["meta"]["params"]["sizes"], result["meta"]["params"]["sections"]
    traffic = result["meta"]["params"].get("traffic", "bitext")  # runs before --traffic existed: bitext
    names = list(result["datasets"])
    rounds = sizes["rounds"]
    measured = " and ".join(f"{result['datasets'][name]['heldout']} {name} held-out" for name in names)
    lines = [_meta_line(result["meta"]), "",
             f"{rounds} round(s) × {sizes['prompts']} {traffic} prompts, K = {sizes['k']} written replies of ≤ "
             f"{sizes['new_tokens']} new tokens{_fitted(result)}, {sizes['grounding']} grounding answer(s), "
             f"{sizes['noise']:.0%} wrong ratings, reject `{sections['reject']['rule']}` "
             f"({_similarity_bounds(sections['reject'])}), "
             f"{_writer_epochs(result['generative']['rounds'])}, gate on {sizes['gate_questions']} held-out questions "
             "(always promotes; verdicts below). "
             f"Measured on {measured} questions: "
             "*topic* = topic-correct % of what the writer wrote, *served* = of what the customer was served "
             "(the top grounding answer where serving replaced the written reply), *grounded* = of the top "
             "grounding answer (the writer's retriever; retrieval: the answer itself; – where not recorded), "
             "*sim* = mean similarity of what "
             "was written to the labelled answer (fixed MiniLM), *copy sim* = of the top grounding answer itself "
             "(what a word-for-word copy would score: the writer's ceiling given its retriever; – where not "
             "recorded), *viol* = faithfulness violations %, *fallb.* = "
             "grounding answer served instead (off topic, unfaithful, cut, error).", ""]
    rows = []
    for kind in ("retrieval", "generative"):
        for when, label in (("before", "pretrained"), ("after", f"after {rounds} round(s)")):
            numbers = result[kind][when]
            row = [f"{kind}, {label}"]
            for name in names:
                n = numbers[name]
                grounded = n.get("grounding_topic_correct", n["topic_correct"] if kind == "retrieval" else None)
                copied = n.get("grounding_similarity", n["similarity"] if kind == "retrieval" else None)
                row += [pct(n["topic_correct"]), pct(n.get("served_topic_correct")), pct(grounded),
                        num(n["similarity"], 3), num(copied, 3), pct(n["violations"])]
            rows.append(row + [pct(numbers[traffic].get("fallbacks"))])
    columns = [column for name in names
               for column in (f"{name} topic", "served", "grounded", "sim", "copy sim", "viol")]
    lines += _table(["", *columns, f"fallb. ({traffic})"], rows)
    lines += _retrievers_on_truth(result.get("retrievers_on_truth"), traffic)
    lines += ["", f"Generative rounds (peak RSS of the whole run {num(result['generative'].get('peak_rss_mb'), 0)} "
                  "MB):", ""]
    rows = []
    for r in result["generative"]["rounds"]:
        stage = r["stage_seconds"]
        verdict = (r.get("default_gate") or {}).get("default", {})
        accepted = str(r["accepted"]) + (f" ({r['accepted_written']} written)" if "accepted_written" in r else "")
        rows.append([str(r["round"]), r["status"], str(r["prompts"]), str(r["candidates"]), accepted,
                     str(r["rejected_unfaithful"]), *(num(stage.get(k), 0) for k in ("sample", "score", "finetune",
                                                                                   "gate")),
                     num(r["round_seconds"], 0), num(r["sampling_tokens_per_second"]),
                     num(r["training_tokens_per_second"]), num(r["peak_rss_mb"], 0),
                     {True: "promote", False: "keep"}.get(verdict.get("promote"), "–")])
    lines += _table(["round", "status", "prompts", "candidates", "accepted", "unfaithful", "sample s", "score s",
                     "finetune s", "gate s", "round s", "sampling tok/s", "training tok/s", "peak RSS MB",
                     "default gate"], rows, "ll" + "r" * 12 + "l")
    verdicts = [(r["round"], r["default_gate"]["default"]) for r in result["generative"]["rounds"]
                if r.get("default_gate")]
    if verdicts:
        lines += ["", "The product's default gate on each round's recorded evidence:", ""]
        lines += [f"* round {n}: {'promote' if v['promote'] else 'keep'} — {v['reason']}" for n, v in verdicts]
    return "\n".join(lines)


def _retrievers_on_truth(truth: dict[str, Any] | None, traffic: str) -> list[str]:
    """The two arms' retrievers on the further questions of the traffic's set (runs before 2026-12-02 night: not
    measured)."""
    if not truth:
        return []
    paired = truth["after_paired"]
    return ["", f"The two retrievers (retrieval: the model itself; generative: the writer's, what a reply is grounded "
                f"in) on {truth['n']} further {traffic} questions, in neither the traffic nor the held-out set: "
                f"pretrained {pct(truth['before']['retrieval'])}; after the rounds retrieval "
                f"{pct(truth['after']['retrieval'])}, generative {pct(truth['after']['generative'])} — they differ on "
                f"{paired['wins'] + paired['losses']} questions, the generative arm's right on {paired['wins']} and "
                f"the retrieval arm's on {paired['losses']} (exact McNemar, two-sided p = {paired['p_two_sided']})."]


def render_into(doc: str, section: str, body: str) -> str:
    start, end = f"<!-- bench:{section}:start -->", f"<!-- bench:{section}:end -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(doc):
        raise SystemExit(f"{DOC} has no {start} ... {end} region")
    return pattern.sub(lambda _m: f"{start}\n{body}\n{end}", doc)


def _long_conversation_table(long: dict[str, Any]) -> list[str]:
    """Blocks of turns with the configured Rasa session limit and without one (older results: one row)."""
    blocks = [f"turns {b['turns']}" for b in long["blocks"]]
    own_run = [f"Measured in a run of its own: {_meta_line(long['meta'])} Load average at the end "
               f"{(long['meta'].get('load_average_at_end') or ['?'])[0]}.", ""] if long.get("meta") else []
    if "without_session_limit" not in long:
        return _table([*blocks, "one-turn conversations"], [[*(num(b["p50_ms"], 0) for b in long["blocks"]),
                                                               num(long["one_turn_conversations_p50_ms"], 0)]],
                      "r" * (len(blocks) + 1))
    limit, unbounded = long["session_max_turns"], long["without_session_limit"]
    rows = [[f"a new session every {limit} turns (`server.session_max_turns: {limit}`)", long],
            ["one session (`session_max_turns: 0`: Rasa's inactivity expiry only, as before)", unbounded]]
    table = [[label, *(num(b["p50_ms"], 0) for b in numbers["blocks"]), num(numbers["last_over_first_block"], 2),
              num(numbers.get("last_over_first_block_load_adjusted"), 2), str(numbers["sessions"]),
              str(numbers["largest_session_events"])] for label, numbers in rows]
    if "one_turn_p50_ms" in long["blocks"][0]:
        fresh = [b["one_turn_p50_ms"] for b in long["blocks"]]
        table.append(["one-turn conversations, asked alongside", *(num(ms, 0) for ms in fresh),
                      num(fresh[-1] / fresh[0], 2), "", "", ""])
    lines = own_run + _table(["Rasa sessions", *blocks, "last / first block", "load-adjusted", "sessions",
                              "largest (events)"], table)
    return lines + ["", "The two long conversations ran side by side on two stacks serving the same model, each "
                        "turn paired with a one-turn conversation asked at the same moment "
                        f"({long['failed']} failed turns). *load-adjusted* = last / first block, each block's p50 "
                        "divided by the one-turn conversations' p50 of the same block: the machine's load drifts "
                        "over minutes. *largest* = the events of the conversation's largest Rasa session, the most "
                        "Rasa loads and replays for one message (Rasa's "
                        "`GET /conversations/<id>/tracker?include_events=ALL`)."]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--out", type=Path, help="write the tables to this file instead of into --doc")
    args = parser.parse_args(argv)
    prefix = "../bench/results/" if args.out is None else ""
    bodies = {}
    for section, render in (("quality", quality_markdown), ("speed", speed_markdown),
                            ("out_of_scope", out_of_scope_markdown), ("feedback", feedback_markdown),
                            ("scaled", scaled_markdown), ("generative", generative_markdown),
                            ("generative_golden", generative_markdown),
                            ("round_scale", round_scale_markdown)):
        path = args.results / f"{section}.json"
        if path.exists():
            bodies[section] = render(json.loads(path.read_text(encoding="utf-8")), prefix)
    if not bodies:
        print(f"no results in {args.results}", file=sys.stderr)
        return 1
    if args.out:
        args.out.write_text("\n\n".join(bodies.values()) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
        return 0
    doc = args.doc.read_text(encoding="utf-8")
    for section, body in bodies.items():
        doc = render_into(doc, section, body)
    args.doc.write_text(doc, encoding="utf-8")
    print(f"updated {args.doc} ({', '.join(bodies)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
