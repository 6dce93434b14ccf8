"""Quality benchmark: how much better does the bot get from noisy 👍/👎 alone, and is the rejection step worth it?

Protocol (the product's own code path: rsft_plugin.rounds.run_round, the same retrieval policy, SQLite log and
Assistant, each run in its own temporary rsft installation):

* answer bank = one answer per intent; a fixed split of the dataset into traffic and held-out questions; the
  held-out questions are written as the run's golden CSV (split=heldout), so the round's gate and every accuracy
  number use them, and nothing ever trains on them;
* the traffic is cut into `--rounds` equal chunks. Before round r, simulated users ask chunk r through
  rsft_plugin.assistant.Assistant (the live model answers, the turn is logged) and rate each answer 👍 iff its
  intent is the question's label, flipped with probability `noise` (the same flips for every method); after a 👎
  that asks "Was it one of these?" they click the answer of their label when offered, "None of these" otherwise
  (`--set feedback.choices=0` switches the choices off; each round records `served_within_one_click`);
* after each round: top-1 accuracy on the held-out questions.

Methods, per dataset (noise-free ones once, each rule of bench/common.RULES once per noise level):

    zero_shot      the pretrained live model, no round
    naive          fine-tune (rsft_plugin.stages.finetune.finetune) on every served answer, no rejection
    threshold      run_round, reject.rule=threshold
    statistical    run_round, reject.rule=statistical (the default per-prompt envelope)
    statistical_global   run_round, reject.rule=statistical with reject.r_max=observed (one envelope per round)
    best_of_n      run_round, reject.rule=best_of_n
    oracle         fine-tune on the gold labels of the same traffic questions (upper bound)
    oracle_memory  the oracle plus the product's example memory of every gold pair seen so far (model.memory_*,
                   prototypes included): the ceiling of today's retrieval kind on this traffic (not in the default
                   run; `--methods oracle_memory`)
    rasa_diet / rasa_response_selector   Rasa 3.6 trained on all gold-labelled traffic (bench/rasa_peer.py)

naive and oracle see what a round sees: the chunk's questions plus a replay of up to `collect.replay` earlier
traffic questions, and start from their own previous model. The rounds run with a gate that always promotes
(gate.level 1, topic and rating checks off), so every method is measured on every round; whether the product's
default gate (and the older threshold gate) would have promoted the round is recorded next to it, and judged
against truth: each candidate and its parent are scored on `--truth` further questions that are neither traffic
nor held-out (bench/gate_truth.py).

Methods are independent jobs; `--jobs N` runs N of them at once in worker processes with one torch thread each
(on 2 shared cores this finishes sooner than one process with two threads, whose OpenMP threads spin-wait for
each other whenever another process holds a core). Accuracies do not depend on it; per-round seconds do.

    python -m bench.quality --jobs 2              # the full benchmark (make bench-quality)
    python -m bench.quality --smoke --out DIR     # seconds-long version with checks (make bench-smoke)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from rsft_plugin import choices, labels, runtime
from rsft_plugin.config import Config, ModelConfig, parse_overrides
from rsft_plugin.errors import ConfigError
from rsft_plugin.evaluate import evaluate
from rsft_plugin.log import RoundLog
from rsft_plugin.models import load_version, pretrained_policy
from rsft_plugin.models.memory import MemoryRule, Remembered
from rsft_plugin.parts import Parts, build_parts
from rsft_plugin.rounds import run_round
from rsft_plugin.stages.collect import replay_sample
from rsft_plugin.stages.finetune import finetune
from rsft_plugin.stages.records import TrainingPair
from rsft_plugin.text import clean_text

from . import gate_truth
from .common import (
    DATASETS,
    DEFAULT_DATASETS,
    DEFAULT_RESULTS,
    RASA_PYTHON,
    REPO,
    RULES,
    BenchError,
    Dataset,
    exit_status,
    finish_run,
    load_dataset,
    rasa_env,
    resolve_datasets_dir,
    run_metadata,
    write_json,
    write_world,
)

SUPERVISED = ("oracle", "oracle_memory", "naive")  # methods that fine-tune on given labels, without rounds
ALWAYS_PROMOTE = {"level": 1.0, "topic_level": 0.0, "rated_level": 0.0}

FULL = {"traffic": 600, "heldout": 400, "truth": 1000, "rounds": 5, "noise": [0.0, 0.2, 0.4], "rasa_epochs": 100,
        "rate_share": 1.0, "sections": {}}
SMOKE = {"traffic": 40, "heldout": 20, "truth": 100, "rounds": 2, "noise": [0.2], "rasa_epochs": 1, "rate_share": 1.0,
         # a few dozen questions: lower the product's minimums so rounds train instead of stopping, and cap epochs
         "sections": {"collect": {"min_prompts": 5}, "reject": {"min_accepted": 3}, "finetune": {"max_epochs": 1}}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=DEFAULT_DATASETS,
                        help="folder with bitext-customer-support/ and banking77/ (relative: to the repo root)")
    parser.add_argument("--only", default=",".join(DATASETS), help="comma-separated datasets to run")
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="where quality.json and PNGs go")
    parser.add_argument("--traffic", type=int, help=f"traffic questions per dataset (full: {FULL['traffic']})")
    parser.add_argument("--heldout", type=int, help=f"held-out questions per dataset (full: {FULL['heldout']})")
    parser.add_argument("--truth", type=int, help=f"questions (neither traffic nor held-out) that judge the gate "
                                                  f"(full: {FULL['truth']}; fewer where the dataset has fewer)")
    parser.add_argument("--rounds", type=int, help=f"rounds (full: {FULL['rounds']})")
    parser.add_argument("--noise", help="comma-separated rating flip probabilities (full: 0,0.2,0.4)")
    parser.add_argument("--rate-share", type=float,
                        help="share of simulated customers who rate (full: 1); the others say thanks after an answer "
                             "that looks right to them and re-ask a paraphrase after one that does not")
    parser.add_argument("--rasa-epochs", type=int, help="DIET/ResponseSelector epochs (full: 100, Rasa's default)")
    parser.add_argument("--no-rasa", action="store_true", help="leave out the Rasa peer")
    parser.add_argument("--methods", help=f"comma-separated subset of naive, oracle, oracle_memory, "
                                           f"{', '.join(RULES)}, rasa (default: all but oracle_memory; --smoke: "
                                           "the default rule's instead of every rule)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="methods run in this many processes at once (1: one after another, cleanest timings)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the rating flips and the replay")
    parser.add_argument("--split-seed", type=int,
                        help="seed of the traffic / held-out / truth split alone (default: --seed); fixed across "
                             "--seed runs, their spread is the method's, not that of which questions are held out")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one rsft.yml setting for every method, e.g. --set reject.beta=0.5 (repeatable)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the golden set, then check the output")
    parser.add_argument("--keep-work", action="store_true", help="keep the temporary rsft installations")
    args = parser.parse_args(argv)
    sizes = dict(SMOKE if args.smoke else FULL)
    for key in ("traffic", "heldout", "truth", "rounds", "rasa_epochs", "rate_share"):
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    if args.noise is not None:
        sizes["noise"] = [float(x) for x in args.noise.split(",")]
    sizes["split_seed"] = args.seed if args.split_seed is None else args.split_seed
    try:
        sizes["sections"] = _merge(sizes["sections"], parse_overrides(args.overrides))
    except ConfigError as error:
        parser.error(str(error))
    datasets_dir = resolve_datasets_dir(args.datasets)
    methods = set(args.methods.split(",") if args.methods else _default_methods(args.smoke))
    if args.no_rasa:
        methods.discard("rasa")
    unknown = methods - {*SUPERVISED, "rasa", *RULES}
    if unknown:
        parser.error(f"unknown method(s) {sorted(unknown)}")
    names = ["golden"] if args.smoke and args.only == ",".join(DATASETS) else args.only.split(",")
    if args.smoke:  # every loader still has to work, even though only the golden set is run
        for name in DATASETS:
            loaded = load_split(name, datasets_dir, sizes, args.seed)
            if len(loaded.traffic) != sizes["traffic"] or len(loaded.heldout) != sizes["heldout"]:
                raise BenchError(f"{name}: the split has the wrong size")
    params = {**sizes, "datasets": names, "datasets_dir": str(datasets_dir), "seed": args.seed, "jobs": args.jobs,
              "methods": sorted(methods), "smoke": args.smoke, "rasa": "rasa" in methods,
              "gate_for_rounds": ALWAYS_PROMOTE, "rsft_config": _config_sections(Config())}
    result = {"meta": run_metadata(params), "datasets": {}}
    out_json = args.out / "quality.json"
    work = Path(tempfile.mkdtemp(prefix="rsft-bench-quality-"))
    started = time.perf_counter()
    try:
        jobs = []
        for name in names:
            dataset = load_split(name, datasets_dir, sizes, args.seed)
            zero_started = time.perf_counter()
            zero = evaluate(pretrained_policy(dataset.bank, model_config(sizes["sections"])), dataset.heldout_questions)
            result["datasets"][name] = {
                "dataset": dataset.describe(), "methods": {},
                "zero_shot": {"accuracy": zero.accuracy, "seconds": round(time.perf_counter() - zero_started, 2)}}
            print(f"[{name}] zero-shot held-out accuracy {zero.accuracy:.1%} ({zero.n} questions)", flush=True)
            jobs += [(name, "rasa", None)] if "rasa" in methods else []
            jobs += [(name, rule, noise) for noise in sizes["noise"] for rule in RULES if rule in methods]
            jobs += [(name, method, None) for method in SUPERVISED if method in methods]
        write_json(out_json, result)
        for (name, key), method in _run_jobs(jobs, sizes, args.seed, datasets_dir, work, result, args.jobs):
            result["datasets"][name]["methods"].update(method if key == "rasa" else {key: method})
            result["datasets"][name]["gate_vs_truth"] = gate_truth.total(
                [m["gate_vs_truth"] for m in result["datasets"][name]["methods"].values() if "gate_vs_truth" in m])
            write_json(out_json, result)
        from .plots import plot_quality

        finish_run(result, out_json, started, plot_quality)
    finally:
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    return exit_status(check_quality(result, smoke=args.smoke))


def _run_jobs(jobs: list[tuple[str, str, float | None]], sizes: dict[str, Any], seed: int, datasets_dir: Path,
              work: Path, result: dict[str, Any], processes: int) -> Any:
    """Yield ((dataset, result key), method result) as each job finishes, in this process or in a pool."""
    def arguments(job: tuple[str, str, float | None]) -> tuple:
        name, method, noise = job
        return (name, method, noise, sizes, seed, datasets_dir, work / name,
                result["datasets"][name]["zero_shot"]["accuracy"])

    def key(job: tuple[str, str, float | None]) -> tuple[str, str]:
        name, method, noise = job
        return name, method if noise is None else f"{method}@{noise:g}"

    if processes <= 1:
        for job in jobs:
            yield key(job), run_method(*arguments(job))
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=processes, mp_context=context, initializer=_init_worker,
                             initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(run_method, *arguments(job)): job for job in jobs}
        for future in as_completed(futures):
            yield key(futures[future]), future.result()


def _init_worker(parent: int) -> None:
    """Pool workers share the cores: one torch thread each instead of every worker using all of them.

    They also exit when the benchmark's process dies: killed with it still running, a worker would otherwise
    finish its job alone, stealing a core from the next run.
    """
    import torch

    torch.set_num_threads(1)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(2)
    os._exit(1)


def load_split(name: str, datasets_dir: Path, sizes: dict[str, Any], seed: int) -> Dataset:
    """The dataset at this run's sizes, split by `sizes["split_seed"]` (None or absent: by the run's own seed)."""
    split_seed = seed if sizes.get("split_seed") is None else sizes["split_seed"]
    return load_dataset(name, datasets_dir, sizes["traffic"], sizes["heldout"], split_seed, sizes["truth"])


def run_method(name: str, method: str, noise: float | None, sizes: dict[str, Any], seed: int, datasets_dir: Path,
               work: Path, zero_shot: float) -> dict[str, Any]:
    """One method on one dataset, start to finish (the unit the process pool runs)."""
    dataset = load_split(name, datasets_dir, sizes, seed)
    bench = _DatasetBench(dataset, sizes, seed, work, zero_shot)
    if method == "rasa":
        return bench.rasa()
    if method in SUPERVISED:
        return bench.supervised(method)
    return bench.rounds(method, noise)


class _DatasetBench:
    def __init__(self, dataset: Dataset, sizes: dict[str, Any], seed: int, work: Path,
                 zero_shot: float | None = None) -> None:
        """`zero_shot`: the pretrained model's held-out accuracy where the caller measured it already (None:
        measured here, with this bench's own pretrained model)."""
        self.dataset, self.sizes, self.seed, self.work = dataset, sizes, seed, work
        self.bank = dataset.bank
        self.chunks = [list(c) for c in np.array_split(np.arange(len(dataset.traffic)), sizes["rounds"])]
        self.turn_labels: dict[str, str] = {}  # turn id -> the asked question's label, filled while feeding
        self._misclicked = 0  # careless clicks (`click_noise`) in the chunk being fed
        self.heldout = dataset.heldout_questions
        self.pretrained = pretrained_policy(self.bank, model_config(sizes["sections"]))
        self.zero_shot = evaluate(self.pretrained, self.heldout).accuracy if zero_shot is None else zero_shot

    def log(self, message: str) -> None:
        print(f"[{self.dataset.name}] {message}", flush=True)

    # ---- traffic -------------------------------------------------------------------------------------------

    def _flips(self, noise: float) -> np.ndarray:
        """Which ratings are flipped at this noise level: fixed per (seed, noise), shared by every method."""
        rng = np.random.default_rng([self.seed, round(noise * 1000)])
        return rng.random(len(self.dataset.traffic)) < noise

    def _raters(self) -> np.ndarray:
        """Which customers rate (the share `rate_share`): fixed per seed, shared by every method and noise level."""
        return np.random.default_rng([self.seed, 7]).random(len(self.dataset.traffic)) < self.sizes["rate_share"]

    def _feed(self, config: Config, indices: list[int], flips: np.ndarray, round_no: int) -> dict[str, Any]:
        """Ask the chunk's questions through the real Assistant and rate each answer from its label.

        As `rsft simulate`'s customers do: after a 👎 that asks "Was it one of these?" (feedback.choices > 0), the
        answer of the label's topic is clicked when offered, "None of these" otherwise; a wrong answer that comes
        with the right one as an up-front choice (feedback.choices_up_front_margin) gets that click, not a rating.
        A customer who does not rate (`rate_share` < 1) acts instead (implicit.py records it when its weight is on):
        thanks after an answer that looks right, a paraphrase of the question after one that does not — as noisy
        as ratings (the same flips). With `rephrase` a customer who answered "None of these" puts the question in
        other words once (`_rephrase`). With `label_share` an operator labels that share of the questions whose
        customer answered "None of these" with their right answer (labels.py; as a shop whose operators label the
        conversations handed to them).
        """
        started = time.perf_counter()
        assistant = runtime.boot(config, watch=False)
        raters, careless = self._raters(), self._careless()
        self._misclicked = 0
        served, correct, picked, offered, shown_up_front = [], 0, 0, 0, 0
        acted = {"thanks": 0, "reasked": 0, "rephrased": 0, "rephrase_settled": 0, "labelled": 0}
        try:
            for i in indices:
                text, label = self.dataset.traffic[i]
                sender = f"bench-{round_no}-{i}"
                reply = assistant.answer(sender, None, text)
                if reply.turn_id is None:  # nothing to answer (an empty question)
                    continue
                right = self.bank.get(reply.answer_id).topic == label
                served.append((i, reply.answer_id))
                self.turn_labels[reply.turn_id] = label
                correct += right
                up_front = self._pick(reply.buttons, label)
                shown_up_front += up_front is not None  # the buttons a customer sees with the answer itself
                if not raters[i] and not _clicks_up_front(right, up_front):
                    acted[self._act(assistant, sender, i, bool(right) ^ bool(flips[i]))] += 1
                    continue
                clicked = self._respond(assistant, sender, reply, label, right, up_front, flips[i], careless, i)
                if clicked is not None:
                    offered += 1  # "offered" in the results: choices the customer answered (a pick or None of these)
                    picked += self._is_right(clicked, label)
                if clicked == choices.NONE_OF_THESE and self.sizes.get("rephrase"):
                    acted["rephrased"] += 1
                    acted["rephrase_settled"] += self._rephrase(assistant, sender, i, flips, careless)
                if clicked == choices.NONE_OF_THESE and self._operator_labels(i):
                    labels.record_label(assistant.store, self.bank, reply.turn_id, self.bank.get(label).id)
                    acted["labelled"] += 1
        finally:
            runtime.shutdown()
        return {"served": served, "served_accuracy": correct / len(served) if served else 0.0,
                "served_within_one_click": (correct + picked) / len(served) if served else 0.0,
                "choices_offered": offered, "choices_picked": picked, "choices_up_front": shown_up_front,
                "implicit_thanks": acted["thanks"], "implicit_reasks": acted["reasked"],
                "rephrased": acted["rephrased"], "rephrase_settled": acted["rephrase_settled"],
                "labelled": acted["labelled"], "misclicked": self._misclicked,
                "seconds": round(time.perf_counter() - started, 2)}

    def _act(self, assistant: Any, sender: str, i: int, looks_right: bool) -> str:
        """A customer who does not rate: thanks, or the same question in other words (another traffic question of
        the same label, drawn per question and seed)."""
        if looks_right:
            assistant.thanked(sender)
            return "thanks"
        self._ask_again(assistant, sender, i)
        return "reasked"

    def _ask_again(self, assistant: Any, sender: str, i: int) -> tuple[Any, int] | None:
        """Question `i` in other words: another traffic question of its label (drawn per question and seed), asked
        by the same customer; (reply, its traffic index), or None when the label has no other question."""
        label = self.dataset.traffic[i][1]
        same = [j for j, (_, other) in enumerate(self.dataset.traffic) if other == label and j != i]
        if not same:
            return None
        j = same[int(np.random.default_rng([self.seed, 11, i]).integers(len(same)))]
        again = assistant.answer(sender, None, self.dataset.traffic[j][0])
        if again.turn_id is None:
            return None
        self.turn_labels[again.turn_id] = label
        return again, j

    def _respond(self, assistant: Any, sender: str, reply: Any, label: str, right: bool, up_front: str | None,
                 flip: bool, careless: np.ndarray, i: int) -> str | None:
        """What a rating customer does with an answer: a wrong one that came with the right answer up front gets
        that click; otherwise a 👍/👎 (flipped with `flip`), and after a 👎 a click on the right choice when offered,
        "None of these" otherwise — or, for a `careless[i]` customer, another of the offered buttons. The click made
        (an answer id or "None of these"), or None."""
        clicked, buttons = up_front, reply.buttons
        if not _clicks_up_front(right, up_front):
            rated = assistant.rate(sender, reply.turn_id, int(right) ^ int(flip))
            clicked, buttons = self._pick(rated.buttons, label), rated.buttons
        if clicked is not None and careless[i]:
            clicked = self._misclick(buttons, clicked, i)
        if clicked is not None:
            assistant.choose(sender, reply.turn_id, clicked)
        return clicked

    def _operator_labels(self, i: int) -> bool:
        """Whether an operator labels question `i` once its customer answered "None of these" (the share
        `label_share`, 0 unless the arm's), drawn per question and seed."""
        share = self.sizes.get("label_share", 0.0)
        return share > 0 and np.random.default_rng([self.seed, 19, i]).random() < share

    def _careless(self) -> np.ndarray:
        """Which questions' customers click carelessly (the share `click_noise`, 0 unless the arm's): per seed."""
        share = self.sizes.get("click_noise", 0.0)
        return np.random.default_rng([self.seed, 13]).random(len(self.dataset.traffic)) < share

    def _misclick(self, buttons: list[dict[str, str]], meant: str, i: int) -> str:
        """Another of the offered buttons than the one `meant` (answers and "None of these"), drawn per question
        and seed; `meant` when it was the only one."""
        others = [a for a in dict.fromkeys([*_offered(buttons), choices.NONE_OF_THESE]) if a != meant]
        if not others:
            return meant
        self._misclicked += 1
        return others[int(np.random.default_rng([self.seed, 17, i]).integers(len(others)))]

    def _is_right(self, clicked: str, label: str) -> bool:
        """Whether a click served the customer the right answer (a pick of the label's topic)."""
        return clicked != choices.NONE_OF_THESE and self.bank.get(clicked).topic == label

    def _rephrase(self, assistant: Any, sender: str, i: int, flips: np.ndarray, careless: np.ndarray) -> bool:
        """After "None of these": the question once more in other words, that answer treated as any other
        (`_respond`, flipped as question j's rating is; no third try). True when the customer settled on an answer
        (a 👍 or a pick)."""
        asked = self._ask_again(assistant, sender, i)
        if asked is None:
            return False
        reply, j = asked
        label = self.dataset.traffic[i][1]
        right = self.bank.get(reply.answer_id).topic == label
        up_front = self._pick(reply.buttons, label)
        clicked = self._respond(assistant, sender, reply, label, right, up_front, flips[j], careless, j)
        if clicked is None:  # rated, and no click followed: a 👍, or a 👎 with no choices to offer
            return bool(int(right) ^ int(flips[j]))
        return clicked != choices.NONE_OF_THESE

    def _pick(self, buttons: list[dict[str, str]], label: str) -> str | None:
        """The simulated customer's click among a reply's choice buttons (None: the reply offers none)."""
        offered = _offered(buttons)
        if not offered:
            return None
        return choices.pick([(a, self.bank.get(a).topic) for a in offered if a != choices.NONE_OF_THESE], label)

    # ---- (c, d, e) rounds ----------------------------------------------------------------------------------

    def rounds(self, rule: str, noise: float) -> dict[str, Any]:
        config = write_world(self.work / f"{rule}-{noise:g}", self.bank, self.dataset.heldout,
                             round_sections(self.sizes["sections"], rule, bool(self.sizes.get("gated"))))
        with build_parts(config) as parts:  # this run's composition root
            return self._rounds(parts, rule, noise)

    def _rounds(self, parts: Parts, rule: str, noise: float) -> dict[str, Any]:
        config, registry = parts.config, parts.registry
        registry.set_live(registry.publish(self.pretrained, notes="pretrained").name, "bench")
        flips = self._flips(noise)
        accuracy = self.zero_shot
        truth = self._truth_accuracy(self.pretrained)
        rounds = []
        for number, chunk in enumerate(self.chunks, start=1):
            fed = self._feed(config, chunk, flips, number)
            started, cpu_started = time.perf_counter(), time.process_time()
            result = run_round(parts, show_bar=False)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            stats, gate = result.stats, result.stats.get("gate") or {}
            truth_live, truth_candidate = truth, None
            if result.status == "promoted":  # the candidate is the new live version (kept: the live one stays)
                accuracy = gate["candidate_accuracy"]
                truth = truth_candidate = self._truth_accuracy(load_version(registry.live_path(), config.model))
            verdicts = gate_truth.verdicts(gate)
            rounds.append({
                "round": number, "status": result.status, "reason": result.reason, "accuracy": accuracy,
                "live_accuracy": gate.get("live_accuracy"), "candidate_accuracy": gate.get("candidate_accuracy"),
                "default_gate_promotes": verdicts["default"]["promote"] if verdicts else None,
                "gate_verdicts": verdicts, "gate_evidence": gate.get("evidence"), "truth_live_accuracy": truth_live,
                "truth_candidate_accuracy": truth_candidate,
                "truth_gain": None if truth_candidate is None or truth_live is None else truth_candidate - truth_live,
                "truth_accuracy": truth,
                "served_accuracy": fed["served_accuracy"], "served_within_one_click": fed["served_within_one_click"],
                "choices_offered": fed["choices_offered"], "choices_picked": fed["choices_picked"],
                "choices_up_front": fed["choices_up_front"],
                "implicit_thanks": fed["implicit_thanks"], "implicit_reasks": fed["implicit_reasks"],
                "rephrased": fed["rephrased"], "rephrase_settled": fed["rephrase_settled"],
                "labelled": fed["labelled"],
                "misclicked": fed["misclicked"],
                "signals_used": stats.get("signals_used"),
                "flipped_ratings": int(flips[chunk].sum()), "prompts": stats.get("prompts"),
                "trainable_prompts": stats.get("trainable_prompts"), "candidates": stats.get("candidates"),
                "accepted": stats.get("accepted"), "acceptance_rate": stats.get("acceptance_rate"),
                "rating_noise_rate": stats.get("rating_noise_rate"),
                "posterior_trusted": stats.get("posterior_trusted"),
                "precision": self._precision(parts.log, result.round_id),
                "finetune": stats.get("finetune") or {},
                "round_seconds": round(seconds, 2), "round_cpu_seconds": round(cpu, 2), "feed_seconds": fed["seconds"],
                "stage_seconds": result.stage_seconds})
            self.log(f"{rule} noise {noise:g} round {number}: {result.status}, held-out {accuracy:.1%}, served "
                     f"{fed['served_accuracy']:.1%} ({fed['served_within_one_click']:.1%} within one click), "
                     f"accepted {stats.get('accepted')} ({stats.get('acceptance_rate')}), "
                     f"precision {rounds[-1]['precision']}, estimated wrong ratings {stats.get('rating_noise_rate')}, "
                     f"{seconds:.0f} s (+{fed['seconds']:.0f} s traffic)" + _truth_note(rounds[-1]))
        return {"method": rule, "noise": noise, "config": _config_sections(config), "rounds": rounds,
                "gate_vs_truth": gate_truth.summarize(rounds)}

    def _truth_accuracy(self, model: Any) -> float | None:
        """Accuracy on the truth questions (None when the run has none)."""
        questions = self.dataset.truth_questions
        return evaluate(model, questions).accuracy if questions else None

    def _precision(self, log: RoundLog, round_id: int) -> float | None:
        """Share of the round's accepted (prompt, answer) pairs whose answer is the prompt's true intent.

        A prompt's text is its first turn's question (merged near-duplicates keep all turn ids), so its label is
        the label of the question asked in that turn.
        """
        judged = [self.turn_labels[first] == self.bank.get(e.answer_id).topic for e in log.training_examples(round_id)
                  if (first := e.turn_ids[0]) in self.turn_labels]
        return round(sum(judged) / len(judged), 4) if judged else None

    # ---- (b) naive and (f) oracle --------------------------------------------------------------------------

    def supervised(self, method: str) -> dict[str, Any]:
        """Fine-tune round by round on every served answer (naive) or on the gold label (oracle)."""
        config = write_world(self.work / method, self.bank, self.dataset.heldout, self.sizes["sections"])
        with build_parts(config) as parts:  # this run's composition root
            return self._supervised(parts, method)

    def _supervised(self, parts: Parts, method: str) -> dict[str, Any]:
        config, registry = parts.config, parts.registry
        registry.set_live(registry.publish(self.pretrained, notes="pretrained").name, "bench")
        flips = self._flips(0.0)  # naive ignores ratings; they are logged as the product would log them
        rng = np.random.default_rng(self.seed)
        live, seen, rounds = self.pretrained, [], []
        for number, chunk in enumerate(self.chunks, start=1):
            if method == "naive":
                fed = self._feed(config, chunk, flips, number)
                new = list(fed["served"])  # (traffic index, the served answer's key)
            else:
                fed = {"seconds": 0.0, "served_accuracy": None}
                new = [(i, self.bank.get(self.dataset.traffic[i][1]).id) for i in chunk]
            # as collect does: a sample of the most recent earlier questions
            replay = replay_sample(seen[-config.collect.replay * 5:], config.collect.replay, rng)
            pairs = [TrainingPair(clean_text(self.dataset.traffic[i][0]), answer, ()) for i, answer in new + replay]
            started, cpu_started = time.perf_counter(), time.process_time()
            tuned = finetune(live, pairs, config.finetune, show_bar=False)
            train_seconds = time.perf_counter() - started
            seen.extend(new)
            judged = self._remembering(tuned.model, seen, number, config) if method == "oracle_memory" else tuned.model
            accuracy = evaluate(judged, self.heldout).accuracy
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            right = [self.bank.get(a).topic == self.dataset.traffic[i][1] for i, a in new + replay]
            rounds.append({
                "round": number, "status": "trained", "accuracy": accuracy, "served_accuracy": fed["served_accuracy"],
                "truth_accuracy": self._truth_accuracy(judged),
                "pairs": len(pairs), "acceptance_rate": 1.0, "precision": round(sum(right) / len(right), 4),
                "finetune": {"epochs": tuned.epochs_run, "best_epoch": tuned.best_epoch,
                             "train_pairs": tuned.train_pairs, "val_pairs": tuned.val_pairs,
                             "refit_epochs": tuned.refit_epochs,
                             "examples_per_second": round(tuned.examples_per_second, 1)},
                "round_seconds": round(seconds, 2), "round_cpu_seconds": round(cpu, 2),
                "finetune_seconds": round(train_seconds, 2),
                "feed_seconds": fed["seconds"]})
            self.log(f"{method} round {number}: held-out {accuracy:.1%}, {len(pairs)} pairs "
                     f"(precision {rounds[-1]['precision']:.1%}), {seconds:.0f} s")
            live = tuned.model
            if method == "naive":  # the next chunk is served by the new model, through the registry as in product
                registry.set_live(registry.publish(live, parent=registry.live_name(), notes="naive").name, "bench")
        return {"method": method, "noise": None, "config": _config_sections(config), "rounds": rounds}

    def _remembering(self, model: Any, seen: list[tuple[int, str]], number: int, config: Config) -> Any:
        """`model` with the example memory a round would give it had every traffic question so far been accepted
        with its gold label: one example per question text, the newest `model.memory_size` (0: none), as
        stages/memory.py keeps them and rounds.py attaches them."""
        if not config.model.memory_size:
            return model
        by_question = {}
        for i, answer in seen:
            question = clean_text(self.dataset.traffic[i][0])
            by_question[question] = Remembered(question, answer, (f"traffic-{i}",), number)
        kept = list(by_question.values())[-config.model.memory_size:]
        return model.remember(kept, MemoryRule.configured(config.model))

    # ---- (g) the Rasa peer ---------------------------------------------------------------------------------

    def rasa(self) -> dict[str, Any]:
        """Rasa 3.6 (DIET per intent; ResponseSelector per retrieval intent) trained on all gold-labelled traffic."""
        directory = self.work / "rasa"
        directory.mkdir(parents=True, exist_ok=True)
        job = {"train": [list(row) for row in self.dataset.traffic],
               "test": [list(row) for row in self.dataset.heldout],
               "answers": {a.topic: a.text for a in self.bank.answers}, "modes": ["diet", "response_selector"],
               "epochs": self.sizes["rasa_epochs"], "seed": 42}
        (directory / "job.json").write_text(json.dumps(job), encoding="utf-8")
        if not RASA_PYTHON.exists():
            raise BenchError(f"{RASA_PYTHON} is missing: run `make venvs` first")
        started = time.perf_counter()
        completed = subprocess.run([str(RASA_PYTHON), str(REPO / "bench" / "rasa_peer.py"), "--job",
                                    str(directory / "job.json"), "--workdir", str(directory / "projects"), "--out",
                                    str(directory / "out.json")], cwd=directory, env=rasa_env(), capture_output=True,
                                   text=True, check=False)
        if completed.returncode != 0:
            raise BenchError(f"the Rasa peer failed (exit {completed.returncode}):\n{completed.stderr[-3000:]}")
        seconds = time.perf_counter() - started
        out = json.loads((directory / "out.json").read_text(encoding="utf-8"))
        methods = {}
        for mode, numbers in out["modes"].items():
            methods[f"rasa_{mode}"] = {
                "method": f"rasa_{mode}", "noise": None, "rasa_version": out["rasa_version"],
                "epochs": job["epochs"], "trained_on": len(job["train"]), "accuracy": numbers["accuracy"],
                "train_seconds": numbers["train_seconds"], "predict_seconds": numbers["predict_seconds"]}
            self.log(f"Rasa {mode}: held-out {numbers['accuracy']:.1%} (trained in {numbers['train_seconds']:.0f} s)")
        methods["rasa_diet"]["process_seconds"] = round(seconds, 1)
        return methods


def round_sections(sections: dict[str, Any], rule: str, gated: bool) -> dict[str, Any]:
    """The rsft settings a run's rounds use: `sections` with the rule's, and a gate that promotes every round (so
    each can be judged against truth) unless `gated`: then the configured one, as in the product."""
    return _merge(sections, {"reject": RULES[rule], **({} if gated else {"gate": ALWAYS_PROMOTE})})


def _offered(buttons: list[dict[str, str]]) -> list[str]:
    """The answer ids a reply's choice buttons offer ("None of these" included), in button order."""
    return [parsed[1] for b in buttons if (parsed := choices.parse_choice(b["payload"]))]


def _clicks_up_front(right: bool, up_front: str | None) -> bool:
    """A simulated customer given a wrong answer clicks the right one when it came up front, instead of rating."""
    return not right and up_front not in (None, choices.NONE_OF_THESE)


def _merge(base: dict[str, dict[str, Any]], extra: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    merged = {name: dict(values) for name, values in base.items()}
    for name, values in extra.items():
        merged.setdefault(name, {}).update(values)
    return merged


def _truth_note(row: dict[str, Any]) -> str:
    if row.get("truth_gain") is None or not row.get("gate_verdicts"):
        return ""
    said = {name: "promote" if v["promote"] else "refuse" for name, v in row["gate_verdicts"].items()}
    return (f"; truth {row['truth_live_accuracy']:.1%} -> {row['truth_candidate_accuracy']:.1%} "
            f"({row['truth_gain']:+.1%}), default gate would {said['default']}, old gate would {said['old']}")


def model_config(sections: dict[str, Any]) -> ModelConfig:
    """The model section as the runs' rsft.yml has it (with `--set model.*`). A version records its temperature and
    trainable layers, and every run starts from the pretrained version, so it must be built with them for such an
    override to reach the rounds (before 2026-12-02 it was built with the defaults, and did not)."""
    return dataclasses.replace(Config().model, **sections.get("model", {}))


def _config_sections(config: Config) -> dict[str, Any]:
    return {name: dataclasses.asdict(getattr(config, name))
            for name in ("model", "collect", "sample", "score", "reject", "finetune", "gate", "feedback")}


def _default_methods(smoke: bool) -> list[str]:
    """Every method; the smoke runs only the product's default rule, because the rules share every line of the
    bench's round loop (each rule itself is tested in tests/test_rules.py)."""
    return ["naive", "oracle", *([Config().reject.rule] if smoke else RULES), "rasa"]


def check_quality(result: dict[str, Any], smoke: bool) -> list[str]:
    """Structural checks (never timings): every method produced numbers, every round finished."""
    problems = []
    params = result["meta"]["params"]
    for name, entry in result["datasets"].items():
        chosen = set(params.get("methods", ["naive", "oracle", *RULES]))
        expected = ({m for m in SUPERVISED if m in chosen}
                    | {f"{rule}@{noise:g}" for noise in params["noise"] for rule in RULES if rule in chosen})
        if params["rasa"]:
            expected |= {"rasa_diet", "rasa_response_selector"}
        missing = expected - set(entry["methods"])
        if missing:
            problems.append(f"{name}: no result for {sorted(missing)}")
        if not 0 <= entry.get("zero_shot", {}).get("accuracy", -1) <= 1:
            problems.append(f"{name}: no zero-shot accuracy")
        for key, method in entry["methods"].items():
            if "rounds" not in method:
                if not 0 <= method.get("accuracy", -1) <= 1:
                    problems.append(f"{name}/{key}: no accuracy")
                continue
            if len(method["rounds"]) != params["rounds"]:
                problems.append(f"{name}/{key}: {len(method['rounds'])} rounds, expected {params['rounds']}")
            for row in method["rounds"]:
                if row["status"] == "failed":
                    problems.append(f"{name}/{key} round {row['round']} failed: {row.get('reason')}")
                if smoke and row["status"] not in ("promoted", "trained"):
                    problems.append(f"{name}/{key} round {row['round']} ended {row['status']}: {row.get('reason')}")
                if not 0 <= row["accuracy"] <= 1:
                    problems.append(f"{name}/{key} round {row['round']}: accuracy {row['accuracy']}")
            problems += _check_gate_vs_truth(f"{name}/{key}", method, entry["dataset"].get("truth", 0))
    return problems


def _check_gate_vs_truth(where: str, method: dict[str, Any], truth: int) -> list[str]:
    """A rounds method judged every promoted round against the truth set, and its counts add up."""
    if method.get("method") not in RULES or not truth:
        return []
    promoted = [r for r in method["rounds"] if r["status"] == "promoted"]
    problems = [f"{where} round {r['round']}: no truth judgement or gate verdicts" for r in promoted
                if r.get("truth_gain") is None or set(r.get("gate_verdicts") or {}) != set(gate_truth.GATES)]
    summary = method.get("gate_vs_truth") or {}
    if summary.get("rounds") != len(promoted):
        problems.append(f"{where}: gate vs truth judged {summary.get('rounds')} rounds, {len(promoted)} promoted")
    for name in gate_truth.GATES:
        counts = summary.get(name) or {}
        if counts.get("refused_really_better", 0) > summary.get("really_better", 0) or \
                counts.get("promoted_really_worse", 0) > summary.get("really_worse", 0):
            problems.append(f"{where}: gate vs truth counts for the {name} gate do not add up: {counts}")
    if summary.get("better_not_ahead", 0) > summary.get("really_better", 0) or \
            summary.get("worse_ahead", 0) > summary.get("really_worse", 0):
        problems.append(f"{where}: gate vs truth's held-out disagreements exceed the rounds they count: {summary}")
    return problems


if __name__ == "__main__":
    sys.exit(main())
