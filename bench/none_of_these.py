"""Is a 👎 followed by "None of these" evidence that the rated answer was right after all? (docs/benchmarks.md)

    python -m bench.none_of_these --datasets ../shared/datasets --out bench/results

With careless raters, some 👎 land on right answers; the customer is then offered the next-best answers, none of
which is right, and clicks "None of these". Had the served answer been wrong, the right one would often have been
among those offered. So the pair (👎, "None of these") might mark a careless 👎 — or an answer the bank ranks badly.
This measures which, per dataset and rate of wrong ratings, on the traffic questions of a benchmark split answered
by the pretrained model (what a first round sees), every customer rating as bench/quality.py's do:

* how many of the "None of these" follow a 👎 on a right answer, overall and by the cosine margin between the
  served answer and the runner-up (a confident answer);
* how many of them the rating-noise model (rsft_plugin/stages/noise.py: EM over every rating, pick and "None of
  these" of the split, the policy's probabilities as prior) gives a posterior above 0.5 for the served answer,
  and how many of those were right — what trusting the posterior instead of a 👍 would add.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rsft_plugin import choices
from rsft_plugin.config import Config
from rsft_plugin.models.retrieval import policy_from_cosines
from rsft_plugin.stages import noise
from rsft_plugin.stages.evidence import CHOICE
from rsft_plugin.stages.score import estimate_questions

from .common import DATASETS, DEFAULT_DATASETS, DEFAULT_RESULTS, finish_run, resolve_datasets_dir, run_metadata
from .quality import FULL, load_split, model_config, pretrained_policy

NOISE = (0.05, 0.2, 0.4)
CONFIDENT_MARGIN = 0.1  # cosine of the served answer minus the runner-up's


@dataclass(frozen=True)
class NoneOfThese:
    """One question answered, rated 👎, offered the next-best answers, and "None of these" clicked."""

    served_right: bool
    margin: float  # served answer's cosine minus the runner-up's
    posterior: float  # the noise model's P(served answer is right | every signal of the split)


def none_events(cosines: np.ndarray, topics: list[str], labels: list[str],
                flips: np.ndarray) -> tuple[list[NoneOfThese], dict[str, Any]]:
    """Simulate every question's customer on the pretrained policy and return the "None of these" events.

    Args:
        cosines: (Q, A) question-answer cosines; topics: each answer's topic; labels: each question's.
        flips: (Q,) bool, this customer's rating is wrong.
    """
    config = Config()
    questions, served = [], []
    for i, label in enumerate(labels):
        order = np.argsort(-cosines[i])
        prior = policy_from_cosines(cosines[i], config.sample.temperature)  # what a round's candidates carry
        top = order[0]
        right = topics[top] == label
        observations = [noise.Observation(str(top), right ^ bool(flips[i]))]
        offered = [] if observations[0].positive else order[1:1 + config.feedback.choices]
        clicked = choices.pick([(str(a), topics[a]) for a in offered], label) if len(offered) else None
        if clicked == choices.NONE_OF_THESE:
            observations += [noise.Observation(str(a), False, CHOICE, config.feedback.none_weight) for a in offered]
        elif clicked is not None:
            observations.append(noise.Observation(clicked, True, CHOICE, config.feedback.choice_weight))
        questions.append(noise.Question({str(a): float(prior[a]) for a in order[:config.sample.k]}, observations,
                                        unnamed=len(topics) - config.sample.k))
        served.append((clicked == choices.NONE_OF_THESE, top, right, float(cosines[i, top] - cosines[i, order[1]])))
    found = estimate_questions(questions, config.score)
    events = [NoneOfThese(right, margin, found.posteriors[i][str(top)])
              for i, (none, top, right, margin) in enumerate(served) if none]
    return events, {"estimated_wrong_ratings": round(found.rates[noise.RATING].mean, 3),
                    "prior_power": round(found.prior_power, 2), "thumbs_down": sum(
                        not q.observations[0].positive for q in questions)}


def summarize(events: list[NoneOfThese]) -> dict[str, Any]:
    confident = [e for e in events if e.margin >= CONFIDENT_MARGIN]
    trusted = [e for e in events if e.posterior > Config().score.trust_posterior]

    def right_share(some: list[NoneOfThese]) -> float | None:
        return round(sum(e.served_right for e in some) / len(some), 3) if some else None

    return {"none_of_these": len(events), "served_right": right_share(events),
            "confident": len(confident), "confident_served_right": right_share(confident),
            "posterior_trusted": len(trusted), "posterior_trusted_right": right_share(trusted)}


def measure(name: str, datasets_dir: Path, noise_levels: list[float], seed: int) -> dict[str, Any]:
    sizes = {**FULL, "split_seed": 0}
    dataset = load_split(name, datasets_dir, sizes, seed)
    model = pretrained_policy(dataset.bank, model_config({}))
    labels = [label for _, label in dataset.traffic]
    topics = [answer.topic for answer in dataset.bank.answers]
    cosines = model.cosines([text for text, _ in dataset.traffic])
    rows = {}
    for level in noise_levels:
        flips = np.random.default_rng([seed, round(level * 1000)]).random(len(labels)) < level
        events, fit = none_events(cosines, topics, labels, flips)
        rows[f"{level:g}"] = {**summarize(events), **fit, "wrong_ratings": int(flips.sum())}
        print(f"[{name}] {level:.0%} wrong ratings: {rows[f'{level:g}']}", flush=True)
    served_right = [topics[a] == label for a, label in zip(cosines.argmax(axis=1), labels, strict=True)]
    return {"questions": len(labels), "served_right": round(float(np.mean(served_right)), 3), "by_noise": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.none_of_these", description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=DEFAULT_DATASETS, help="folder with the datasets (relative: to the repo)")
    parser.add_argument("--only", default=",".join(DATASETS), help="comma-separated datasets")
    parser.add_argument("--noise", default=",".join(f"{n:g}" for n in NOISE), help="rates of wrong ratings")
    parser.add_argument("--seed", type=int, default=0, help="seed of the rating flips (the split's is 0)")
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="where none_of_these.json goes")
    args = parser.parse_args(argv)
    levels = [float(x) for x in args.noise.split(",")]
    names = args.only.split(",")
    result = {"meta": run_metadata({"datasets": names, "noise": levels, "seed": args.seed}), "datasets": {}}
    started = time.perf_counter()
    for name in names:
        result["datasets"][name] = measure(name, resolve_datasets_dir(args.datasets), levels, args.seed)
    finish_run(result, args.out / "none_of_these.json", started, lambda _result, _folder: [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
