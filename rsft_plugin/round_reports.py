"""Rounds as the console shows them: the list, one round's full report, and its plots.

A round's report combines its `rounds` row (status, stage, progress, reason, stats with the gate's per-topic
accuracy and the acceptance rate per topic), its candidates from `round_candidates` (accepted and rejected, with
every reward part) and the PNG plots the report stage wrote. Prompts are customer text: they pass through
`pii.redact` before they are shown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import Config
from .errors import NotFound
from .log import RoundRecord
from .parts import Parts
from .versions import round_history, round_record

PLOTS = {
    "reward_histogram.png": "Rewards of accepted and rejected candidates, with the acceptance rule",
    "acceptance_by_topic.png": "Share of candidates accepted, per topic",
    "accuracy_by_topic.png": "Held-out accuracy per topic, live model vs candidate",
}
_SUMMARY = ("id", "status", "stage", "progress", "message", "reason", "started_at", "finished_at", "live_version",
            "new_version", "rule")


def rounds_overview(parts: Parts, limit: int = 50) -> list[dict[str, Any]]:
    """Rounds newest first with their headline numbers; rounds whose process died are marked failed first."""
    out = []
    for row in round_history(parts, limit):
        stats, gate = row.stats, row.gate
        out.append({**_summary(row), "prompts": stats.get("prompts"),
                    "candidates": stats.get("candidates"), "accepted": stats.get("accepted"),
                    "acceptance_rate": stats.get("acceptance_rate"), "live_accuracy": gate.get("live_accuracy"),
                    "candidate_accuracy": gate.get("candidate_accuracy")})
    return out


def round_detail(parts: Parts, round_id: int, examples: int = 25) -> dict[str, Any]:
    """Everything about one round: numbers, per-topic accuracy before/after, examples, plots, why it ended so.

    Raises:
        NotFound: no such round.
    """
    from .pii import redact  # prompts are customer text

    row = round_record(parts, round_id)
    if row is None:
        raise NotFound(f"there is no round {round_id}")
    accepted_total, accepted_rows = parts.log.round_examples(round_id, True, examples)
    rejected_total, rejected_rows = parts.log.round_examples(round_id, False, examples)
    accepted, rejected = ([{**e.to_dict(), "prompt": redact(e.prompt or "")} for e in rows]
                          for rows in (accepted_rows, rejected_rows))
    stats, gate = row.stats, row.gate
    per_topic = [{"topic": topic, "live": numbers.get("live"), "candidate": numbers.get("candidate"),
                  "change": (numbers.get("candidate") or 0) - (numbers.get("live") or 0)}
                 for topic, numbers in sorted((gate.get("per_topic") or {}).items())]
    acceptance = [{"topic": t, "rate": r} for t, r in sorted((stats.get("acceptance_by_topic") or {}).items(),
                                                              key=lambda item: (item[1], item[0]))]
    directory = _round_dir(parts.config, round_id)
    return {
        **_summary(row), "params": row.params, "stage_seconds": row.stage_seconds,
        "stats": {k: v for k, v in stats.items() if k not in ("gate", "acceptance_by_topic")},
        "gate": {k: v for k, v in gate.items() if k not in ("per_topic", "evidence")} or None,
        "verdict": _verdict(row), "per_topic": per_topic, "acceptance_by_topic": acceptance,
        "accepted": {"total": accepted_total, "examples": accepted},
        "rejected": {"total": rejected_total, "examples": rejected},
        "plots": [{"name": name, "title": title} for name, title in PLOTS.items() if (directory / name).is_file()],
    }


def plot_path(parts: Parts, round_id: int, name: str) -> Path:
    """The file of one of a round's plots; only the report's own PNGs are ever served.

    Raises:
        NotFound: an unknown plot name, or the round has no such plot (yet).
    """
    if name not in PLOTS:
        raise NotFound(f"no plot {name!r}; a round's plots are {sorted(PLOTS)}")
    path = _round_dir(parts.config, round_id) / name
    if not path.is_file():
        raise NotFound(f"round {round_id} has no {name}")
    return path


def _round_dir(config: Config, round_id: int) -> Path:
    return config.paths.rounds_dir / f"round-{round_id:04d}"


def _summary(row: RoundRecord) -> dict[str, Any]:
    return {k: getattr(row, k) for k in _SUMMARY}


def _verdict(row: RoundRecord) -> str:
    """One sentence: promoted, kept or stopped, and why."""
    reason = row.reason or ""
    match row.status:
        case "promoted":
            promoted = f"Promoted {row.new_version} (trained from {row.live_version}): {reason}"
            guard = row.stats.get("live_guard")  # customers' ratings later rolled it back
            return f"{promoted}. Then {guard['message']}" if guard else promoted
        case "kept":
            return f"Kept {row.live_version} live — the gate refused the candidate: {reason}"
        case "stopped":
            return f"Stopped before training: {reason}"
        case "failed":
            return f"Failed: {reason}"
        case _:
            return f"Running: {row.stage} ({(row.progress or 0):.0%})"
