"""The gate judged against truth: for every benchmark round, was the candidate really better or worse than its
parent on a large truth set (questions neither traffic nor the gate's held-out set contain), and what did the gate
decide?

The rounds of bench/quality.py run with a gate that always promotes; each round records the gate's evidence (the
paired counts, stages/records.GateEvidence), so the product's default gate is recomputed here from it with
`stages.gate.judge`, exactly as a round would have decided. For comparison, the gate this project had before the
statistical one (gain >= 0.5 points, no topic down by more than 25 points, kept-out agreement down by at most 5
points) is recomputed from the recorded accuracies.

A round counts as *really better* when the candidate's truth accuracy beats its parent's by at least one point,
*really worse* when it is at least one point below. The two mistakes that matter:
refused-but-really-better (a lost improvement) and promoted-but-really-worse (a regression served to customers).

Some of those mistakes no gate that reads the held-out questions can avoid: the held-out set is a sample too, and
a round that is really better on the truth set can be level or behind on it (and a really worse one ahead). Each
summary counts those rounds as well (`better_not_ahead`, `worse_ahead`), so a gate's mistakes can be read against
what its evidence allowed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rsft_plugin.config import GateConfig
from rsft_plugin.stages.gate import judge
from rsft_plugin.stages.paired import PairedCounts
from rsft_plugin.stages.records import GateEvidence

ONE_POINT = 0.01
# the gate before the statistical one (issue 11), kept here only to measure against it
OLD_GATE = {"min_improvement": 0.005, "topic_tolerance": 0.25, "rated_tolerance": 0.05}
GATES = ("default", "old")


def verdicts(gate: dict[str, Any], config: GateConfig | None = None) -> dict[str, dict[str, Any]]:
    """{"default": {"promote", "reason"}, "old": {...}} for one round's recorded gate numbers ({} = no gate ran)."""
    if not gate or "evidence" not in gate:
        return {}
    result = judge(GateEvidence.from_dict(gate["evidence"]), config or GateConfig())
    old = old_gate_refusals(gate)
    return {"default": {"promote": result.promote, "reason": result.reason},
            "old": {"promote": not old, "reason": "; ".join(old) or "gain and every topic within the old limits"}}


def old_gate_refusals(gate: dict[str, Any]) -> list[str]:
    """Why the old threshold gate would refuse: gain below 0.5 points, a topic down > 25 points, ratings down > 5."""
    reasons = []
    gain = gate["candidate_accuracy"] - gate["live_accuracy"]
    if gain < OLD_GATE["min_improvement"]:
        reasons.append(f"gain {gain:+.1%} below {OLD_GATE['min_improvement']:+.1%}")
    dropped = [t for t, a in gate.get("per_topic", {}).items()
               if a["live"] - a["candidate"] > OLD_GATE["topic_tolerance"] + 1e-9]
    if dropped:
        reasons.append(f"{len(dropped)} topic(s) dropped more than {OLD_GATE['topic_tolerance']:.0%}: "
                       f"{', '.join(sorted(dropped)[:5])}")
    live, candidate = gate.get("rated_live"), gate.get("rated_candidate")
    if live is not None and candidate is not None and live - candidate > OLD_GATE["rated_tolerance"] + 1e-9:
        reasons.append(f"kept-out agreement fell {live:.1%} -> {candidate:.1%}")
    return reasons


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts over the rounds that have a truth judgement: how often each gate made each mistake."""
    judged = [r for r in rounds if r.get("truth_gain") is not None and r.get("gate_verdicts")]
    better = [r for r in judged if r["truth_gain"] >= ONE_POINT]
    worse = [r for r in judged if r["truth_gain"] <= -ONE_POINT]
    summary: dict[str, Any] = {"rounds": len(judged), "really_better": len(better), "really_worse": len(worse),
                               "better_not_ahead": sum(_ahead_on_heldout(r) is False for r in better),
                               "worse_ahead": sum(_ahead_on_heldout(r) is True for r in worse)}
    for name in GATES:
        summary[name] = {
            "promoted": sum(r["gate_verdicts"][name]["promote"] for r in judged),
            "refused_really_better": sum(not r["gate_verdicts"][name]["promote"] for r in better),
            "promoted_really_worse": sum(r["gate_verdicts"][name]["promote"] for r in worse)}
    return summary


def _ahead_on_heldout(row: dict[str, Any]) -> bool | None:
    """Whether the candidate was ahead on the held-out questions, as the gate reads "ahead" (None: no evidence)."""
    evidence = row.get("gate_evidence")
    return PairedCounts.from_dict(evidence["heldout"]).ahead if evidence else None


HELDOUT_COUNTS = ("better_not_ahead", "worse_ahead")  # added 2026-12-06; earlier runs' summaries lack them


def total(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The counts of several methods' summaries added up. A count some summary lacks (recorded before it existed)
    is left out of the total rather than summed over the summaries that have it."""
    out: dict[str, Any] = {"rounds": 0, "really_better": 0, "really_worse": 0,
                           **{name: {"promoted": 0, "refused_really_better": 0, "promoted_really_worse": 0}
                              for name in GATES}}
    for key in HELDOUT_COUNTS:
        if summaries and all(key in summary for summary in summaries):
            out[key] = sum(summary[key] for summary in summaries)
    for summary in summaries:
        for key in ("rounds", "really_better", "really_worse"):
            out[key] += summary.get(key, 0)
        for name in GATES:
            for key, value in (summary.get(name) or {}).items():
                out[name][key] += value
    return out


def rejudge(result: dict[str, Any], config: GateConfig) -> dict[str, Any]:
    """Every recorded round of a quality.json or feedback.json judged again under `config`: the summary per dataset
    and noise ("bitext@0.2"; a feedback.json's per dataset, arm and noise, its seeds together: "bitext ARM@0.2")."""
    out: dict[str, Any] = {}
    for name, entry in result["datasets"].items():
        for where, rounds in _recorded_rounds(name, entry):
            out.setdefault(where, []).append(summarize([{**r, "gate_verdicts": _rejudged(r, config)}
                                                        for r in rounds]))
    return {where: total(summaries) for where, summaries in out.items()}


def _recorded_rounds(name: str, entry: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(where, rounds) of one dataset's entry: a quality.json's methods that ran rounds, or a feedback.json's runs
    (those recorded before 2026-12-07 kept no gate evidence: their rounds judge as "no gate ran")."""
    if "runs" in entry:
        return [(f"{name} {run['arm']}@{run['noise']:g}", run["rounds"]) for run in entry["runs"]]
    return [(f"{name}@{method['noise']:g}", method["rounds"]) for method in entry["methods"].values()
            if "rounds" in method and method.get("noise") is not None]


def _rejudged(row: dict[str, Any], config: GateConfig) -> dict[str, Any]:
    if not row.get("gate_evidence"):
        return {}
    verdict = judge(recorded_evidence(row), config)
    return {**row["gate_verdicts"], "default": {"promote": verdict.promote, "reason": verdict.reason}}


def recorded_evidence(row: dict[str, Any]) -> GateEvidence:
    """A round's gate evidence; rounds recorded before the evidence kept the estimated rate of wrong ratings
    (2026-12-07) get it from the round's own `rating_noise_rate`, the same number."""
    evidence = GateEvidence.from_dict(row["gate_evidence"])
    if evidence.rating_noise_rate is None and row.get("rating_noise_rate") is not None:
        evidence = replace(evidence, rating_noise_rate=row["rating_noise_rate"])
    return evidence


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    from pathlib import Path

    from rsft_plugin.config import parse_overrides

    parser = argparse.ArgumentParser(prog="python -m bench.gate_truth",
                                     description="Judge the rounds of one or more quality.json files again under "
                                                 "other gate settings; with several, also their total.")
    parser.add_argument("quality_json", type=Path, nargs="+")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="gate.KEY=VALUE",
                        help="a gate setting to judge with instead of the default, e.g. --set gate.level=0.1")
    args = parser.parse_args(argv)
    config = GateConfig(**parse_overrides(args.overrides).get("gate", {}))
    judged = {}
    for path in args.quality_json:
        result = json.loads(path.read_text(encoding="utf-8"))
        datasets = result.get("datasets") or {}
        if not datasets or any("methods" not in entry and "runs" not in entry for entry in datasets.values()):
            parser.error(f"{path}: not a bench.quality or bench.feedback result (no rounds per method or run)")
        judged[str(path)] = rejudge(result, config)
    if len(judged) > 1:
        judged["total"] = {"all": total([s for per_file in judged.values() for s in per_file.values()])}
    print(json.dumps(judged if len(judged) > 1 else next(iter(judged.values())), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
