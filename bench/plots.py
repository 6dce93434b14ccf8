"""PNG plots of the benchmark results (matplotlib, files only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .common import RULES  # noqa: E402

COLORS = {"naive": "#7f7f7f", "oracle": "#000000", "threshold": "#1f77b4", "statistical": "#d62728",
          "best_of_n": "#2ca02c",
          "statistical_global": "#e377c2", "rasa_diet": "#9467bd", "rasa_response_selector": "#ff7f0e"}
# (a rule without a colour here gets matplotlib's next one)


def plot_quality(result: dict[str, Any], out: Path) -> list[Path]:
    """One PNG per dataset: held-out accuracy vs round, one panel per noise level, one line per method."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    noises = result["meta"]["params"]["noise"]
    for name, entry in result["datasets"].items():
        methods = entry["methods"]
        zero = entry.get("zero_shot", {}).get("accuracy")
        figure, axes = plt.subplots(1, len(noises), figsize=(max(7.0, 5.2 * len(noises)), 4.6), sharey=True,
                                    squeeze=False)
        for axis, noise in zip(axes[0], noises, strict=True):
            for key, style in (("oracle", ":"), ("naive", "--")):
                if key in methods:
                    _line(axis, methods[key], zero, key, style, "(noise-free)")
            for rule in RULES:
                method = methods.get(f"{rule}@{noise:g}")
                if method:
                    _line(axis, method, zero, rule, "-", "")
            last = result["meta"]["params"]["rounds"]
            for key in ("rasa_diet", "rasa_response_selector"):
                if key in methods:
                    axis.axhline(methods[key]["accuracy"], color=COLORS[key], linestyle="-.", linewidth=1)
                    axis.plot([last], [methods[key]["accuracy"]], marker="s", color=COLORS[key],
                              label=f"{key.replace('_', ' ')} (all traffic)")
            if zero is not None:
                axis.axhline(zero, color="#bbbbbb", linewidth=0.8)
            axis.set_title(f"ratings flipped with p = {noise:g}", fontsize=10)
            axis.set_xlabel("round (traffic chunks seen)")
            axis.set_xticks(range(0, last + 1))
            axis.grid(alpha=0.3)
        axes[0][0].set_ylabel("held-out top-1 accuracy")
        handles, labels = axes[0][0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
        info = entry["dataset"]
        figure.suptitle(f"{name}: {info['intents']} intents, {info['traffic']} traffic / {info['heldout']} held-out "
                        f"questions\nheld-out accuracy after each round (round 0 = zero-shot, {zero:.1%})", fontsize=10)
        figure.tight_layout(rect=(0, 0.1, 1, 0.95))
        path = out / f"quality_{name}.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written.append(path)
    return written


def _line(axis: Any, method: dict[str, Any], zero: float | None, key: str, style: str, suffix: str) -> None:
    xs = [0] + [r["round"] for r in method["rounds"]]
    ys = [zero] + [r["accuracy"] for r in method["rounds"]]
    axis.plot(xs, ys, style, marker="o", markersize=3, color=COLORS.get(key), label=f"{key} {suffix}".strip())


def plot_speed(result: dict[str, Any], out: Path) -> list[Path]:
    """Latency by concurrency, the hot swap timeline, and seconds per stage of the 1,000-prompt round."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    levels = result.get("load", {}).get("levels", [])
    if levels:
        figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        users = [level["users"] for level in levels]
        for q, style in (("p50", "-o"), ("p95", "--o"), ("p99", ":o")):
            left.plot(users, [level["rest_ms"][q] for level in levels], style, label=f"REST round trip {q}",
                      color="#1f77b4")
            left.plot(users, [level["action_ms"][q] for level in levels], style, label=f"answer time {q}",
                      color="#d62728")
        left.set_xscale("log")
        left.set_yscale("log")
        left.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        left.set_xticks(users, [str(u) for u in users])
        left.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        left.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        left.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        left.set_xlabel("concurrent simulated users")
        left.set_ylabel("milliseconds")
        left.legend(fontsize=7)
        left.grid(alpha=0.3)
        right.bar([str(u) for u in users], [level["messages_per_second"] for level in levels], color="#2ca02c")
        right.set_xlabel("concurrent simulated users")
        right.set_ylabel("messages / s (end to end)")
        right.grid(alpha=0.3, axis="y")
        figure.suptitle("Serving over the REST channel: Rasa + action server on loopback")
        figure.tight_layout()
        path = out / "speed_latency.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written.append(path)
    swap = result.get("hot_swap")
    if swap and swap.get("timeline"):
        figure, axis = plt.subplots(figsize=(10, 3.6))
        for version, color in (("old", "#7f7f7f"), ("new", "#2b7bba")):
            points = [(t, ms) for t, ms, v, ok in swap["timeline"] if v == version and ok]
            if points:
                axis.scatter([p[0] for p in points], [p[1] for p in points], s=4, color=color,
                             label=f"answered by the {version} version")
        failed = [(t, ms) for t, ms, _v, ok in swap["timeline"] if not ok]
        if failed:
            axis.scatter([p[0] for p in failed], [p[1] for p in failed], s=12, color="#d62728", marker="x",
                         label="failed")
        axis.axvline(0, color="#000000", linewidth=1, label="set_live (pointer flipped)")
        axis.axhline(1000, color="#d62728", linewidth=0.8, linestyle="--", label="1 s")
        axis.set_xlabel("seconds since the live pointer flipped (request start)")
        axis.set_ylabel("REST round trip, ms")
        axis.set_yscale("log")
        axis.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.legend(fontsize=7, loc="upper left")
        axis.grid(alpha=0.3)
        figure.suptitle(f"Hot swap while {swap['users']} users chat")
        figure.tight_layout()
        path = out / "speed_hot_swap.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written.append(path)
    round_numbers = result.get("round", {})
    if round_numbers.get("stage_seconds"):
        stages = round_numbers["stage_seconds"]
        figure, axis = plt.subplots(figsize=(8, 3.4))
        names = list(stages)
        axis.barh(names[::-1], [stages[n] for n in names][::-1], color="#2b7bba")
        for i, name in enumerate(names[::-1]):
            axis.text(stages[name], i, f" {stages[name]:.1f} s", va="center", fontsize=8)
        axis.set_xlabel("seconds")
        figure.suptitle(f"One round: {round_numbers.get('prompts')} prompts × K={round_numbers.get('k')} "
                        f"({round_numbers.get('rule')} rule)")
        figure.tight_layout()
        path = out / "speed_round_stages.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written.append(path)
    return written


def plot_out_of_scope(result: dict[str, Any], out: Path) -> list[Path]:
    """Shares caught / refused vs the score threshold, the configured default marked."""
    out.mkdir(parents=True, exist_ok=True)
    rows = result["sweep"]
    thresholds = [r["threshold"] for r in rows]
    figure, axis = plt.subplots(figsize=(9.5, 4.4))
    for key, label, color, style in (
            ("out_of_scope_caught", "out-of-scope lines caught", "#2ca02c", "-"),
            ("in_scope_refused", "in-scope questions refused", "#d62728", "-"),
            ("correct_lost", "correct answers lost", "#ff7f0e", "--"),
            ("wrong_caught", "wrong answers caught", "#1f77b4", "--")):
        axis.plot(thresholds, [100 * r[key] for r in rows], style, color=color, marker=".", label=label)
    default = result["model"].get("configured_min_score")
    if default is not None:
        axis.axvline(default, color="#7f7f7f", linestyle=":", label=f"model.min_score = {default:g}")
    sizes = result["sizes"]
    axis.set(xlabel="score threshold (best cosine)", ylabel="%", ylim=(-2, 102),
             title=f"Out-of-scope detection, pretrained policy ({sizes['out_of_scope']} out-of-scope, "
                   f"{sizes['in_scope']} in-scope)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    path = out / "out_of_scope.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return [path]


def plot_feedback(result: dict[str, Any], out: Path) -> list[Path]:
    """One PNG: per dataset, final held-out accuracy per arm and noise level (mean over seeds, bars spanning the
    seeds' min..max)."""
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n, e in result["datasets"].items() if e.get("summary")]
    if not names:
        return []
    arms = list(result["meta"]["params"]["arms"])
    noises = result["meta"]["params"]["noise"]
    figure, axes = plt.subplots(1, len(names), figsize=(max(7.0, 5.0 * len(names)), 4.4), squeeze=False)
    width = 0.8 / max(1, len(arms))
    for axis, name in zip(axes[0], names, strict=True):
        runs = result["datasets"][name]["runs"]
        for a, arm in enumerate(arms):
            for n, noise in enumerate(noises):
                finals = [100 * r["final"] for r in runs if r["arm"] == arm and r["noise"] == noise]
                if not finals:
                    continue
                mean = sum(finals) / len(finals)
                axis.bar(n + a * width, mean, width, color=f"C{a}", label=arm if n == 0 else None,
                         yerr=[[mean - min(finals)], [max(finals) - mean]], capsize=2)
        zero = [100 * r["zero_shot"] for r in runs]
        axis.axhline(sum(zero) / len(zero), color="#7f7f7f", linestyle=":", label="zero-shot (mean)")
        axis.set_xticks([n + 0.4 - width / 2 for n in range(len(noises))], [f"{x:.0%} wrong" for x in noises])
        axis.set(title=name, ylabel="held-out accuracy after the last round, %")
        axis.set_ylim(bottom=max(0, min(zero) - 15))
        axis.grid(alpha=0.3, axis="y")
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    path = out / "feedback.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return [path]
