"""Feedback benchmark (issue 11): what choices after a 👎 and implicit signals add to ratings, over seeds.

Each *arm* is the product's default round (rule statistical, default score/noise settings) fed by simulated
customers that behave the same in every arm; only what the bot offers and records differs:

    ratings        every customer rates; no choices, no implicit signals
    choices        every customer rates; after a 👎 "Was it one of these?" (they click the right answer when
                   offered, "None of these" otherwise)
    half_ratings   half the customers rate (the others stay silent to the bot: nothing is recorded)
    half_implicit  half rate; the others say thanks after an answer that looks right and re-ask a paraphrase after
                   one that does not (as noisy as the ratings), recorded as implicit signals
    half_both      half rate and get choices; the others act implicitly
    choices_up_front       as choices, and with the answer itself when its top two are within 0.2 in probability
    choices_up_front_wide  the same within 0.4 (the product's default since 2026-12-06)
    rephrase       as choices_up_front_wide, and a customer who answers "None of these" puts the question in other
                   words once (another traffic question of its label) and rates / clicks that answer as usual
    rephrase_resolved  the same customers, with the `resolved` signal on (feedback.resolved_weight 1): the answer
                   that settled the rephrased question also counts for the missed one
    operator_labels    as choices_up_front_wide, and an operator labels half of the questions whose customer
                   answered "None of these" with their right answer (the console's "Right answer", labels.py)
    operator_labels_all  the same, every such question labelled
    careless_clicks    as choices_up_front_wide, and customers click as carelessly as they rate: each click
                   (a pick or "None of these") is, with the run's noise probability, another of the offered buttons

For every dataset × noise level × seed (the seed draws the traffic / held-out / truth split, the rating flips and
who rates) each arm runs `--rounds` rounds with the always-promote gate of bench/quality.py, so every arm is
measured on every round, and the default gate's decision is judged against truth (bench/gate_truth.py).
Reported per arm: held-out accuracy after the last round (mean over seeds and the spread max − min), served
accuracy within one click (mean over rounds and seeds), and the gate's mistakes.

    python -m bench.feedback --jobs 2                              # the full matrix (make bench-feedback)
    python -m bench.feedback --noise 0.2 --seeds 0,1,2             # one noise level
    python -m bench.feedback --smoke --out DIR                     # seconds-long version with checks
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from rsft_plugin import choices
from rsft_plugin.config import FeedbackConfig, parse_overrides
from rsft_plugin.errors import ConfigError

from . import gate_truth
from .common import (
    DATASETS,
    DEFAULT_DATASETS,
    DEFAULT_RESULTS,
    exit_status,
    finish_run,
    resolve_datasets_dir,
    run_metadata,
    write_json,
)
from .quality import FULL, SMOKE, _DatasetBench, _init_worker, _merge, load_split

IMPLICIT_OFF = {"reask_weight": 0.0, "asked_human_weight": 0.0, "thanks_weight": 0.0}
IMPLICIT_ON = {"reask_weight": 0.3, "asked_human_weight": 0.3, "thanks_weight": 0.3}
# the arms measured before up-front choices became the default (2026-12-02) keep meaning "after a 👎 only"
AFTER_THUMBS_DOWN = {"choices": 3, "choices_up_front_margin": 0.0}
UP_FRONT_WIDE = {"choices": 3, "choices_up_front_margin": 0.4, **IMPLICIT_OFF}
ARMS: dict[str, tuple[float, dict[str, Any]]] = {  # name -> (share of customers who rate, feedback settings)
    "ratings": (1.0, {"choices": 0, **IMPLICIT_OFF}),
    "choices": (1.0, {**AFTER_THUMBS_DOWN, **IMPLICIT_OFF}),
    "half_ratings": (0.5, {"choices": 0, **IMPLICIT_OFF}),
    "half_implicit": (0.5, {"choices": 0, **IMPLICIT_ON}),
    "half_both": (0.5, {**AFTER_THUMBS_DOWN, **IMPLICIT_ON}),
    # choices with the answer itself when the model is unsure (top-two probabilities within 0.2), and after a 👎
    "choices_up_front": (1.0, {"choices": 3, "choices_up_front_margin": 0.2, **IMPLICIT_OFF}),
    # the same within 0.4 (the product's default since 2026-12-06)
    "choices_up_front_wide": (1.0, UP_FRONT_WIDE),
    # customers who rephrase after "None of these" (REPHRASING), without and with the signal that links the two
    "rephrase": (1.0, {**UP_FRONT_WIDE, "resolved_weight": 0.0}),
    "rephrase_resolved": (1.0, {**UP_FRONT_WIDE, "resolved_weight": 1.0}),
    # customers whose clicks are as often wrong as their ratings (CARELESS)
    "careless_clicks": (1.0, UP_FRONT_WIDE),
    # operators who label half / all of the questions answered "None of these" (LABEL_SHARE)
    "operator_labels": (1.0, UP_FRONT_WIDE),
    "operator_labels_all": (1.0, UP_FRONT_WIDE),
}
REPHRASING = {"rephrase", "rephrase_resolved"}  # arms whose customers ask once more after "None of these"
CARELESS = {"careless_clicks"}  # arms whose customers misclick at the run's noise rate
# arms whose operators label this share of the questions answered "None of these"
LABEL_SHARE = {"operator_labels": 0.5, "operator_labels_all": 1.0}
DEFAULT_ARMS = ["ratings", "choices", "half_ratings", "half_implicit", "half_both", "choices_up_front_wide"]
RULE = "statistical"
SMOKE_ARMS = ["ratings", "half_both"]  # every path once: ratings only; choices and implicit signals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.feedback", description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=DEFAULT_DATASETS, help="folder with bitext-customer-support/, banking77/")
    parser.add_argument("--only", default=",".join(DATASETS), help="comma-separated datasets")
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="where feedback.json goes")
    parser.add_argument("--arms", help=f"comma-separated arms of {list(ARMS)} (default: {DEFAULT_ARMS}; --smoke: "
                                       f"{SMOKE_ARMS})")
    parser.add_argument("--merge", action="store_true",
                        help="add these runs to --out's feedback.json (replacing runs of the same dataset, arm, noise "
                             "and seed) instead of starting a new one")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--split-seed", type=int,
                        help="one traffic / held-out / truth split for every seed (default: each seed draws its own)")
    parser.add_argument("--noise", default="0,0.2,0.4", help="comma-separated rating flip probabilities")
    parser.add_argument("--rounds", type=int, help=f"rounds (full: {FULL['rounds']})")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one torch thread each")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one rsft.yml setting for every arm, e.g. --set collect.gate_fraction=0.05 "
                             "(repeatable; an arm's own feedback settings still apply on top)")
    parser.add_argument("--gated", action="store_true",
                        help="rounds go through the product's gate (rsft.yml's, with --set): a refused round's "
                             "candidate is dropped and the next round starts from the live model, as in the product "
                             "(default: every round promotes, so each trajectory can be judged against truth)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the golden set, then check the output")
    args = parser.parse_args(argv)
    arms = args.arms.split(",") if args.arms else (SMOKE_ARMS if args.smoke else DEFAULT_ARMS)
    if unknown := set(arms) - set(ARMS):
        parser.error(f"unknown arm(s) {sorted(unknown)}")
    sizes = dict(SMOKE if args.smoke else FULL)
    if args.rounds is not None:
        sizes["rounds"] = args.rounds
    sizes["split_seed"] = args.split_seed
    sizes["gated"] = args.gated
    try:
        sizes["sections"] = _merge(sizes["sections"], parse_overrides(args.overrides))
    except ConfigError as error:
        parser.error(str(error))
    names = ["golden"] if args.smoke else args.only.split(",")
    seeds = [0] if args.smoke else [int(s) for s in args.seeds.split(",")]
    noises = [0.2] if args.smoke else [float(n) for n in args.noise.split(",")]
    datasets_dir = resolve_datasets_dir(args.datasets)
    params = {"sizes": {k: v for k, v in sizes.items() if k not in ("noise", "rate_share")}, "datasets": names,
              "arms": {a: {"rate_share": ARMS[a][0], "feedback": ARMS[a][1]} for a in arms}, "seeds": seeds,
              "noise": noises, "rule": RULE, "overrides": args.overrides, "jobs": args.jobs, "smoke": args.smoke,
              "datasets_dir": str(datasets_dir)}
    out_json = args.out / "feedback.json"
    result = _start(out_json, params, names, args.merge)
    work = Path(tempfile.mkdtemp(prefix="rsft-bench-feedback-"))
    started = time.perf_counter()
    # seed by seed, so a matrix stopped part-way holds whole seeds of every dataset (`--merge` adds the rest)
    jobs = [(name, arm, noise, seed) for seed in seeds for name in names for noise in noises for arm in arms]
    try:
        for run in _run_all(jobs, sizes, datasets_dir, work, args.jobs):
            runs = result["datasets"][run["dataset"]]["runs"]
            runs[:] = [r for r in runs if _key(r) != _key(run)] + [run]
            print(f"[{run['dataset']}] {run['arm']} noise {run['noise']:g} seed {run['seed']}: held-out "
                  f"{run['zero_shot']:.1%} -> {run['final']:.1%}, within one click {run['within_one_click']:.1%}",
                  flush=True)
            write_json(out_json, result)
        for entry in result["datasets"].values():
            entry["summary"] = summarize(entry["runs"])
        from .plots import plot_feedback

        first_wall = result["meta"].get("wall_seconds")  # a merged run keeps the first run's wall time
        finish_run(result, out_json, started, plot_feedback)
        if result["meta"].get("merged") and first_wall is not None:
            result["meta"]["merged"][-1]["wall_seconds"] = result["meta"]["wall_seconds"]
            result["meta"]["wall_seconds"] = first_wall
            write_json(out_json, result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return exit_status(check_feedback(result, smoke=args.smoke))


def _start(out_json: Path, params: dict[str, Any], names: list[str], merge: bool) -> dict[str, Any]:
    """A new result, or with `merge` the one in `out_json` with this run's parameters added (arms and noise levels
    joined, so the report and the plot show every run; each invocation's metadata kept under `merged`)."""
    meta = run_metadata(params)
    if not merge or not out_json.exists():
        return {"meta": meta, "datasets": {n: {"runs": []} for n in names}}
    result = json.loads(out_json.read_text(encoding="utf-8"))
    kept = result["meta"]["params"]
    kept["arms"] = {**kept["arms"], **params["arms"]}
    kept["noise"] = sorted({*kept["noise"], *params["noise"]})
    kept["seeds"] = sorted({*kept["seeds"], *params["seeds"]})
    result["meta"].setdefault("merged", []).append(meta)
    for name in names:
        result["datasets"].setdefault(name, {"runs": []})
    return result


def _key(run: dict[str, Any]) -> tuple:
    return run["dataset"], run["arm"], run["noise"], run["seed"]


def _run_all(jobs: list[tuple], sizes: dict[str, Any], datasets_dir: Path, work: Path, processes: int) -> Any:
    arguments = [(*job, sizes, datasets_dir, work / f"{job[0]}-{job[1]}-{job[2]:g}-{job[3]}") for job in jobs]
    if processes <= 1:
        yield from (run_arm(*a) for a in arguments)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=processes, mp_context=context, initializer=_init_worker,
                             initargs=(os.getpid(),)) as pool:
        for future in as_completed([pool.submit(run_arm, *a) for a in arguments]):
            yield future.result()


def arm_sections(sections: dict[str, Any], arm: str) -> dict[str, Any]:
    """The rsft settings of one arm's runs: the arm's feedback settings under the run's own (`--set` wins, so
    `--set feedback.choices=5` changes every arm's choices instead of being silently undone by the arm)."""
    return _merge({"feedback": ARMS[arm][1]}, sections)


def run_arm(name: str, arm: str, noise: float, seed: int, sizes: dict[str, Any], datasets_dir: Path,
            work: Path) -> dict[str, Any]:
    """One arm on one dataset, noise level and seed: its rounds, start to finish (the unit the pool runs)."""
    rate_share = ARMS[arm][0]
    arm_sizes = {**sizes, "rate_share": rate_share, "rephrase": arm in REPHRASING,
                 "click_noise": noise if arm in CARELESS else 0.0, "label_share": LABEL_SHARE.get(arm, 0.0),
                 "sections": arm_sections(sizes["sections"], arm)}
    dataset = load_split(name, datasets_dir, sizes, seed)
    bench = _DatasetBench(dataset, arm_sizes, seed, work)  # measures the zero-shot with its pretrained model
    zero, rounds = bench.zero_shot, bench.rounds(RULE, noise)["rounds"]
    served = [r["served_within_one_click"] for r in rounds]
    return {"dataset": name, "arm": arm, "noise": noise, "seed": seed, "zero_shot": zero,
            "final": rounds[-1]["accuracy"], "accuracy": [r["accuracy"] for r in rounds],
            # the live model's truth accuracy before the first round and after each
            "truth": [rounds[0]["truth_live_accuracy"], *(r["truth_accuracy"] for r in rounds)],
            "served": sum(r["served_accuracy"] for r in rounds) / len(rounds),
            "within_one_click": sum(served) / len(served), "gate_vs_truth": gate_truth.summarize(rounds),
            "signals": [r.get("signals_used") for r in rounds],
            "implicit": {"thanks": sum(r["implicit_thanks"] for r in rounds),
                         "reasks": sum(r["implicit_reasks"] for r in rounds)},
            "rephrased": {"asked": sum(r["rephrased"] for r in rounds),
                          "settled": sum(r["rephrase_settled"] for r in rounds)},
            "misclicked": sum(r["misclicked"] for r in rounds),
            "labelled": sum(r["labelled"] for r in rounds),
            "rounds": [{k: r.get(k) for k in ("round", "status", "accuracy", "served_accuracy",
                                              "served_within_one_click",
                                              "choices_offered", "choices_picked", "choices_up_front",
                                              "rephrased", "rephrase_settled", "misclicked", "labelled",
                                              "truth_gain", "default_gate_promotes", "rating_noise_rate",
                                              "precision", "gate_evidence", "gate_verdicts")}
                       for r in rounds]}


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per `arm@noise`: the mean and spread (max − min over seeds) of the final accuracy, the mean gain over
    zero-shot, within-one-click served accuracy, the default gate's mistakes over all the seeds' rounds, and the
    mean and spread of the gain on the truth set (a larger sample than the held-out questions) where every round
    has one."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(f"{run['arm']}@{run['noise']:g}", []).append(run)
    summary = {}
    for key, group in groups.items():
        finals = [r["final"] for r in group]
        truth = [_truth_gain(r) for r in group]
        summary[key] = {"arm": group[0]["arm"], "noise": group[0]["noise"], "seeds": sorted(r["seed"] for r in group),
                        "final_mean": sum(finals) / len(finals), "final_spread": max(finals) - min(finals),
                        "gain_mean": sum(r["final"] - r["zero_shot"] for r in group) / len(group),
                        "zero_shot_mean": sum(r["zero_shot"] for r in group) / len(group),
                        "within_one_click_mean": sum(r["within_one_click"] for r in group) / len(group),
                        "served_mean": sum(r["served"] for r in group) / len(group),
                        "gate_vs_truth": gate_truth.total([r["gate_vs_truth"] for r in group])}
        if None not in truth:
            summary[key].update(truth_gain_mean=sum(truth) / len(truth), truth_gain_spread=max(truth) - min(truth))
    return summary


def _truth_gain(run: dict[str, Any]) -> float | None:
    """How far the run's rounds moved the live model on the truth set, zero-shot to the last round (runs recorded
    before 2026-12-07 kept no per-round truth: the sum of their rounds' gains over their parents, every round
    having promoted). None when the run has no truth set."""
    if run.get("truth"):
        first, last = run["truth"][0], run["truth"][-1]
        return None if first is None or last is None else last - first
    gains = [r.get("truth_gain") for r in run["rounds"]]
    return None if not gains or None in gains else sum(gains)


def check_feedback(result: dict[str, Any], smoke: bool) -> list[str]:
    """Structural checks (not targets): every run finished its rounds; choices were offered and picked where the
    arm offers them and never elsewhere; implicit signals were recorded only where the arm records them; every
    round kept its gate evidence, so `python -m bench.gate_truth` can judge it under other gate settings (a result
    `--merge`d into runs recorded before 2026-12-07, which kept none, is not checked for it); every round promoted,
    or with `--gated` was promoted or kept."""
    problems = []
    evidence_expected = not result.get("meta", {}).get("merged")
    params = result.get("meta", {}).get("params", {})
    gated = params.get("sizes", {}).get("gated", False)
    overridden = parse_overrides(params.get("overrides") or [])  # the run's --set, over every arm's settings
    for name, entry in result["datasets"].items():
        for run in entry["runs"]:
            label = f"{name} {run['arm']}@{run['noise']:g} seed {run['seed']}"
            ended = {r["status"] for r in run["rounds"] if r.get("status")}  # not kept before 2026-12-07
            if ended - ({"promoted", "kept"} if gated else {"promoted"}):
                problems.append(f"{label}: rounds ended {sorted(ended)} "
                                f"({'through the gate' if gated else 'where every round promotes'})")
            if evidence_expected and not all(r.get("gate_evidence") for r in run["rounds"]):
                problems.append(f"{label}: a round kept no gate evidence")
            offered = sum(r["choices_offered"] or 0 for r in run["rounds"])
            settings = FeedbackConfig(**arm_sections(overridden, run["arm"])["feedback"])  # what the bot offered
            offers = settings.choices > 0  # up front too, but after a 👎 in every offering arm
            if offers != (offered > 0):
                problems.append(f"{label}: {offered} choices offered")
            up_front = sum(r.get("choices_up_front") or 0 for r in run["rounds"])  # None before 2026-12-06
            if up_front and not choices.offers_up_front(settings):
                problems.append(f"{label}: {up_front} answers came with choices in an arm that offers none up front")
            recorded = {kind for used in run["signals"] if used for kind in used}
            if "resolved" in recorded and settings.resolved_weight <= 0:
                problems.append(f"{label}: resolved signals recorded with resolved_weight 0")
            implicit = recorded & {"reask", "thanks", "asked_human"}
            if bool(implicit) != (settings.thanks_weight > 0):
                problems.append(f"{label}: implicit signals {sorted(implicit)} recorded with thanks_weight "
                                f"{settings.thanks_weight}")
            asked = (run.get("rephrased") or {}).get("asked", 0)  # absent before 2026-12-07: nobody rephrased
            if bool(asked) != (run["arm"] in REPHRASING):
                problems.append(f"{label}: {asked} questions put in other words after \"None of these\"")
            misclicked = run.get("misclicked")  # not counted before 2026-12-07
            if misclicked and run["arm"] not in CARELESS:
                problems.append(f"{label}: {misclicked} careless clicks in an arm whose customers click carefully")
            if misclicked == 0 and run["arm"] in CARELESS and run["noise"] > 0 and offered >= 20:
                problems.append(f"{label}: no careless click in {offered} clicks at noise {run['noise']:g}")
            labelled = run.get("labelled") or 0  # not counted before 2026-12-08
            if labelled and run["arm"] not in LABEL_SHARE:
                problems.append(f"{label}: {labelled} operator labels in an arm without operators")
            if bool(labelled) != ("label" in recorded):
                problems.append(f"{label}: {labelled} operator labels, {'' if 'label' in recorded else 'none '}"
                                "used by the rounds")
            if not 0 <= run["final"] <= 1 or not 0 <= run["within_one_click"] <= 1:
                problems.append(f"{label}: accuracy out of range")
        if not smoke and not entry.get("summary"):
            problems.append(f"{name}: no summary")
    return problems


if __name__ == "__main__":
    raise SystemExit(main())
