"""Stage 8 — report: a JSON record and PNG plots for one round, next to its row in SQLite.

    reward_histogram.png      rewards of accepted and rejected candidates, with the acceptance boundary
    acceptance_by_topic.png   share of candidates accepted, per topic of the candidate answer
    accuracy_by_topic.png     held-out accuracy per topic, live model vs candidate
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: servers and CI have no display
import matplotlib.pyplot as plt  # noqa: E402

from .records import GateResult, RejectOutcome  # noqa: E402
from .rules import get_rule  # noqa: E402


def write_report(directory: Path, record: dict[str, Any], outcome: RejectOutcome | None,
                 gate_result: GateResult | None) -> list[Path]:
    """Write report.json and whichever plots the round got far enough to have; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / "report.json"]
    written[0].write_text(json.dumps(record, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    if outcome is not None and outcome.decisions:
        written.append(_reward_histogram(directory / "reward_histogram.png", outcome))
        written.append(_acceptance_by_topic(directory / "acceptance_by_topic.png", outcome))
    if gate_result is not None:
        written.append(_accuracy_by_topic(directory / "accuracy_by_topic.png", gate_result))
    return written


def _reward_histogram(path: Path, outcome: RejectOutcome) -> Path:
    accepted = [d.scored.reward for d in outcome.decisions if d.accepted]
    rejected = [d.scored.reward for d in outcome.decisions if not d.accepted]
    figure, axes = plt.subplots(figsize=(7, 4))
    bins = 30
    axes.hist([rejected, accepted], bins=bins, range=(0, max(outcome.r_max, 1e-6)), stacked=True,
              label=[f"rejected ({len(rejected)})", f"accepted ({len(accepted)})"], color=["#c8c8c8", "#2b7bba"])
    extra = get_rule(outcome.rule).draw_boundary(axes, outcome.boundary)
    axes.set_xlabel("reward = w_sim·similarity + w_rating·rating")
    axes.set_ylabel("candidates")
    handles, labels = axes.get_legend_handles_labels()
    axes.legend(handles + extra[0], labels + extra[1], loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3,
                fontsize=8, frameon=False)
    figure.suptitle(f"Rewards and the {outcome.rule} rule — acceptance {outcome.acceptance_rate:.1%}")
    return _save(figure, path)


def _acceptance_by_topic(path: Path, outcome: RejectOutcome) -> Path:
    rates = outcome.acceptance_by_topic()
    figure, axes = plt.subplots(figsize=(7, max(3, 0.22 * len(rates))))
    topics = sorted(rates, key=rates.get)
    axes.barh(topics, [rates[t] for t in topics], color="#2b7bba")
    axes.set_xlim(0, 1)
    axes.set_xlabel("share of candidates accepted")
    axes.tick_params(axis="y", labelsize=7)
    figure.suptitle("Acceptance rate per topic (topic of the candidate answer)")
    return _save(figure, path)


def _accuracy_by_topic(path: Path, result: GateResult) -> Path:
    topics = sorted(result.per_topic)
    figure, axes = plt.subplots(figsize=(7, max(3, 0.25 * len(topics))))
    rows = range(len(topics))
    axes.barh([r + 0.2 for r in rows], [result.per_topic[t]["live"] for t in topics], height=0.4,
              label=f"live {result.live_accuracy:.1%}", color="#c8c8c8")
    axes.barh([r - 0.2 for r in rows], [result.per_topic[t]["candidate"] for t in topics], height=0.4,
              label=f"candidate {result.candidate_accuracy:.1%}", color="#2b7bba")
    axes.set_yticks(list(rows), topics, fontsize=7)
    axes.set_xlim(0, 1)
    axes.set_xlabel("held-out top-1 accuracy")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.05), ncol=2, frameon=False)
    figure.suptitle("Held-out accuracy per topic, before and after")
    return _save(figure, path)


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
