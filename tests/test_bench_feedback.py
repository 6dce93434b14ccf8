"""bench/feedback.py's structural check: what an arm offers shows up in its runs, and nothing it does not offer."""

from __future__ import annotations

import pytest

from bench import feedback


def _run(arm: str, offered: int, up_front: int | None) -> dict:
    """One recorded run of `arm`: one round with `offered` choices clicked and `up_front` answers shown with them."""
    rounds = [{"round": 1, "accuracy": 0.7, "choices_offered": offered, "choices_picked": offered,
               "choices_up_front": up_front, "gate_evidence": {"heldout": {"n": 40, "live_right": 28, "wins": 3,
                                                                          "losses": 1}}}]
    return {"dataset": "golden", "arm": arm, "noise": 0.2, "seed": 0, "final": 0.7, "within_one_click": 0.8,
            "signals": [{"rating": 10}], "rounds": rounds}


def _problems(*runs: dict) -> list[str]:
    return feedback.check_feedback({"datasets": {"golden": {"runs": list(runs)}}}, smoke=True)


def test_up_front_buttons_are_expected_only_where_the_arm_offers_choices_up_front():
    assert _problems(_run("choices_up_front", offered=5, up_front=7)) == []
    assert _problems(_run("choices_up_front", offered=5, up_front=0)) == []  # no answer was unsure: allowed
    (problem,) = _problems(_run("choices", offered=5, up_front=3))  # after a 👎 only
    assert "3 answers came with choices" in problem and "choices@0.2 seed 0" in problem
    (problem,) = _problems(_run("ratings", offered=0, up_front=2))  # no choices at all
    assert "2 answers came with choices" in problem


def test_runs_recorded_before_the_up_front_count_are_not_flagged():
    assert _problems(_run("choices", offered=5, up_front=None)) == []


def test_an_offering_arm_whose_customers_never_clicked_is_flagged():
    (problem,) = _problems(_run("choices", offered=0, up_front=0))
    assert "0 choices offered" in problem


def test_the_truth_set_gain_adds_up_the_rounds_and_is_left_out_when_a_round_has_none():
    def run(seed: int, gains: list) -> dict:
        rounds = [{"round": n + 1, "truth_gain": gain} for n, gain in enumerate(gains)]
        return {**_run("choices", offered=1, up_front=0), "seed": seed, "zero_shot": 0.6, "served": 0.7,
                "gate_vs_truth": {}, "rounds": rounds}

    summary = feedback.summarize([run(0, [0.02, 0.03]), run(1, [0.01, -0.02])])["choices@0.2"]
    assert summary["truth_gain_mean"] == pytest.approx((0.05 - 0.01) / 2)
    assert summary["truth_gain_spread"] == pytest.approx(0.06)
    unjudged = feedback.summarize([run(0, [0.02, 0.03]), run(1, [0.01, None])])["choices@0.2"]
    assert "truth_gain_mean" not in unjudged  # a mean over the judged seeds alone would read as all of them


def test_a_round_without_its_gate_evidence_is_flagged_unless_merged_into_runs_recorded_before_it_was_kept():
    run = _run("choices", offered=5, up_front=0)
    run["rounds"][0]["gate_evidence"] = None
    (problem,) = _problems(run)
    assert "kept no gate evidence" in problem and "choices@0.2 seed 0" in problem
    merged = {"meta": {"merged": [{}]}, "datasets": {"golden": {"runs": [run]}}}
    assert feedback.check_feedback(merged, smoke=True) == []


def test_customers_rephrase_after_none_of_these_only_in_the_rephrasing_arms_and_resolved_only_with_its_weight():
    assert _problems(_run("choices", offered=5, up_front=0)) == []  # recorded before the count: nobody rephrased
    rephrasing = {**_run("rephrase_resolved", offered=5, up_front=2), "rephrased": {"asked": 4, "settled": 3},
                  "signals": [{"rating": 10, "resolved": 2}]}
    assert _problems(rephrasing) == []
    (problem,) = _problems({**rephrasing, "arm": "choices_up_front_wide", "signals": [{"rating": 10}]})
    assert "4 questions put in other words" in problem
    (problem,) = _problems({**rephrasing, "rephrased": {"asked": 0, "settled": 0}})
    assert "0 questions put in other words" in problem
    (problem,) = _problems({**rephrasing, "arm": "rephrase"})  # resolved_weight 0: nothing may be recorded
    assert "resolved signals recorded with resolved_weight 0" in problem


def test_careless_clicks_are_expected_only_in_the_careless_arm():
    assert _problems(_run("careless_clicks", offered=25, up_front=4)) == []  # recorded before the count
    careless = {**_run("careless_clicks", offered=25, up_front=4), "misclicked": 5}
    assert _problems(careless) == []
    (problem,) = _problems({**careless, "misclicked": 0})
    assert "no careless click in 25 clicks" in problem
    assert _problems({**careless, "misclicked": 0, "noise": 0.0}) == []  # careless at noise 0: nobody misclicks
    (problem,) = _problems({**careless, "arm": "choices_up_front_wide"})
    assert "5 careless clicks in an arm whose customers click carefully" in problem


def test_operator_labels_are_expected_only_in_the_labelling_arms_and_in_the_rounds_evidence():
    labelled = {**_run("operator_labels", offered=25, up_front=4), "labelled": 6,
                "signals": [{"rating": 9, "label": 6}]}
    assert _problems(labelled) == []
    (problem,) = _problems({**labelled, "arm": "choices_up_front_wide"})
    assert "6 operator labels in an arm without operators" in problem
    (problem,) = _problems({**labelled, "signals": [{"rating": 9}]})
    assert "6 operator labels, none used by the rounds" in problem
    (problem,) = _problems({**labelled, "labelled": 0})
    assert "0 operator labels, used by the rounds" in problem


def test_a_gated_run_gains_what_its_live_model_gained_on_the_truth_set_kept_rounds_included():
    def run(seed: int, truth: list) -> dict:
        rounds = [{"round": n, "status": "kept" if n == 2 else "promoted", "truth_gain": None if n == 2 else 0.01}
                  for n in (1, 2, 3)]
        return {**_run("choices", offered=1, up_front=0), "seed": seed, "zero_shot": 0.6, "served": 0.7,
                "gate_vs_truth": {}, "rounds": rounds, "truth": truth}

    summary = feedback.summarize([run(0, [0.6, 0.62, 0.62, 0.65]), run(1, [0.5, 0.52, 0.52, 0.53])])["choices@0.2"]
    assert summary["truth_gain_mean"] == pytest.approx((0.05 + 0.03) / 2)
    assert "truth_gain_mean" not in feedback.summarize([run(0, [None, None, None, None])])["choices@0.2"]


@pytest.mark.parametrize("gated", [False, True])
def test_a_kept_round_is_expected_only_when_the_rounds_go_through_the_gate(gated):
    run = _run("choices", offered=5, up_front=0)
    run["rounds"] = [{**run["rounds"][0], "status": "promoted"}, {**run["rounds"][0], "round": 2, "status": "kept"}]
    result = {"meta": {"params": {"sizes": {"gated": gated}}}, "datasets": {"golden": {"runs": [run]}}}
    problems = feedback.check_feedback(result, smoke=True)
    assert problems == [] if gated else "rounds ended ['kept', 'promoted'] (where every round promotes)" in problems[0]
    run["rounds"][1]["status"] = "failed"
    (problem,) = feedback.check_feedback(result, smoke=True)
    assert "rounds ended ['failed', 'promoted']" in problem


def test_gated_rounds_use_the_configured_gate_and_the_others_one_that_promotes_every_round():
    from bench.quality import ALWAYS_PROMOTE, round_sections

    sections = {"gate": {"noisy_rate": 0.3}, "sample": {"k": 4}}
    gated = round_sections(sections, "statistical", gated=True)
    assert gated["gate"] == {"noisy_rate": 0.3} and gated["sample"] == {"k": 4}
    assert round_sections(sections, "statistical", gated=False)["gate"] == {"noisy_rate": 0.3, **ALWAYS_PROMOTE}


def test_a_set_feedback_key_wins_over_the_arm_and_the_arm_fills_the_rest():
    sections = {"feedback": {"choices": 5}, "model": {"top_k": 6}}
    settings = feedback.arm_sections(sections, "choices_up_front_wide")
    assert settings["feedback"]["choices"] == 5 and settings["model"] == {"top_k": 6}
    assert settings["feedback"]["choices_up_front_margin"] == feedback.ARMS["choices_up_front_wide"][1][
        "choices_up_front_margin"]
    assert feedback.arm_sections({}, "ratings")["feedback"]["choices"] == 0  # no --set: the arm's own


def test_the_check_reads_what_the_bot_offered_from_the_arm_under_the_runs_set():
    run = _run("choices", offered=0, up_front=0)
    result = {"meta": {"params": {"overrides": ["feedback.choices=0"]}}, "datasets": {"golden": {"runs": [run]}}}
    assert feedback.check_feedback(result, smoke=True) == []  # choices switched off by --set: none offered is right
    assert "0 choices offered" in _problems(run)[0]  # the arm alone offers them
