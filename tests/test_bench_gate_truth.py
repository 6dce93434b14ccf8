"""bench/gate_truth.py: the gate's decisions against truth, and the mistakes its held-out evidence forced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import gate_truth
from rsft_plugin.config import GateConfig


def _round(number: int, truth_gain: float, wins: int, losses: int) -> dict:
    """A benchmark round: 400 held-out questions (one topic), the candidate `truth_gain` ahead on the truth set."""
    heldout = {"n": 400, "live_right": 240, "wins": wins, "losses": losses}
    gate = {"evidence": {"heldout": heldout, "topics": {"all": heldout}, "rated": None},
            "live_accuracy": 0.6, "candidate_accuracy": 0.6 + (wins - losses) / 400, "per_topic": {}}
    return {"round": number, "status": "promoted", "truth_gain": truth_gain, "gate_evidence": gate["evidence"],
            "gate_verdicts": gate_truth.verdicts(gate)}


ROUNDS = [
    _round(1, 0.03, wins=40, losses=10),  # really better and well ahead on the held-out questions: promoted
    _round(2, 0.02, wins=20, losses=24),  # really better, behind on the held-out sample: refused
    _round(3, -0.02, wins=30, losses=26),  # really worse, a little ahead on the held-out sample: promoted
    _round(4, -0.03, wins=5, losses=30),  # really worse and far behind on them: refused
    _round(5, 0.01, wins=12, losses=12),  # really better, level on the held-out sample: refused (not ahead)
    _round(6, 0.0, wins=15, losses=9),  # level on the truth set: neither kind of mistake
    _round(7, -0.01, wins=8, losses=8),  # really worse, level on the held-out sample: refused (not ahead)
]


def test_the_default_gate_is_counted_against_truth_and_against_what_the_held_out_sample_said():
    summary = gate_truth.summarize(ROUNDS)
    assert (summary["rounds"], summary["really_better"], summary["really_worse"]) == (7, 3, 3)
    assert summary["default"] == {"promoted": 3, "refused_really_better": 2, "promoted_really_worse": 1}
    # every mistake was the held-out sample's: no gate reading it could have made those decisions the other way
    assert (summary["better_not_ahead"], summary["worse_ahead"]) == (2, 1)


@pytest.mark.parametrize(("rate", "promoted"), [(0.4, False), (0.1, True), (None, True)])
def test_rounds_recorded_before_the_evidence_kept_the_noise_rate_are_judged_with_their_own(rate, promoted):
    """Round 3 is ahead by 4 of 56 changed questions: within the plain margin, not within the noisy one."""
    row = {**ROUNDS[2], "rating_noise_rate": rate}
    assert "rating_noise_rate" not in row["gate_evidence"]
    result = {"datasets": {"bitext": {"methods": {"statistical@0.4": {"noise": 0.4, "rounds": [row]}}}}}
    judged = gate_truth.rejudge(result, GateConfig(noisy_rate=0.3))["bitext@0.4"]
    assert judged["default"]["promoted_really_worse"] == int(promoted)


def test_a_gate_that_promotes_everything_refuses_nothing_but_the_held_out_counts_stay():
    result = {"datasets": {"bitext": {"methods": {"statistical@0.2": {"noise": 0.2, "rounds": ROUNDS}}}}}
    judged = gate_truth.rejudge(result, GateConfig(level=1.0, topic_level=0))["bitext@0.2"]
    assert judged["default"] == {"promoted": 7, "refused_really_better": 0, "promoted_really_worse": 3}
    assert (judged["better_not_ahead"], judged["worse_ahead"]) == (2, 1)


def test_several_files_are_judged_each_and_in_total(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    paths = []
    for seed, rounds in enumerate((ROUNDS[:2], ROUNDS[2:])):
        path = tmp_path / f"seed{seed}.json"
        path.write_text(json.dumps({"datasets": {"bitext": {"methods": {
            "statistical@0.4": {"noise": 0.4, "rounds": rounds}}}}}), encoding="utf-8")
        paths.append(str(path))
    assert gate_truth.main([*paths, "--set", "gate.margin=-0.02"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed[paths[0]]["bitext@0.4"]["really_better"] == 2 and printed[paths[1]]["bitext@0.4"]["rounds"] == 5
    assert printed["total"]["all"]["rounds"] == 7
    assert (printed["total"]["all"]["better_not_ahead"], printed["total"]["all"]["worse_ahead"]) == (2, 1)
    assert printed["total"]["all"]["default"]["promoted_really_worse"] == 1


def test_runs_recorded_before_the_held_out_counts_existed_total_without_them_even_beside_newer_runs():
    old = {key: value for key, value in gate_truth.summarize(ROUNDS).items()
           if key not in ("better_not_ahead", "worse_ahead")}
    summed = gate_truth.total([old, old])
    assert summed["rounds"] == 14 and "worse_ahead" not in summed
    mixed = gate_truth.total([old, gate_truth.summarize(ROUNDS)])  # half the rounds counted would read as all
    assert mixed["really_better"] == 6 and "better_not_ahead" not in mixed


def test_a_feedback_result_is_judged_per_dataset_arm_and_noise_with_its_seeds_together():
    runs = [{"dataset": "golden", "arm": "choices", "noise": 0.2, "seed": seed, "rounds": rounds}
            for seed, rounds in enumerate((ROUNDS[:3], ROUNDS[3:]))]
    runs.append({"dataset": "golden", "arm": "ratings", "noise": 0.2, "seed": 0,  # recorded without evidence
                 "rounds": [{k: v for k, v in r.items() if k not in ("gate_evidence", "gate_verdicts")}
                            for r in ROUNDS]})
    result = {"datasets": {"golden": {"runs": runs}}}
    judged = gate_truth.rejudge(result, GateConfig())
    assert judged["golden choices@0.2"] == gate_truth.summarize(ROUNDS)
    assert judged["golden ratings@0.2"]["rounds"] == 0  # nothing to judge it by, not judged as promoted
    everything = gate_truth.rejudge(result, GateConfig(level=1.0, topic_level=0))["golden choices@0.2"]
    assert everything["default"]["promoted_really_worse"] == 3
