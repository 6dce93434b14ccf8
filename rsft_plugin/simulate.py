"""Simulated customers: replay labelled questions through the real bot and rate each answer from the label.

Each question is sent over Rasa's REST channel as its own conversation; the bot's rateable answer is looked up in
the plugin's log (by the turn id its 👍/👎 payloads carry) to see which topic answered; the simulated customer
clicks 👍 when that topic is the label and 👎 otherwise — flipped with probability `noise`, as real ratings are
noisy. When the reply to a 👎 asks "Was it one of these?" (choices.py), the customer clicks the answer whose topic
is the label when it is offered (topics read from the turn's logged top_k), "None of these" otherwise; offered
with a wrong answer up front (`feedback.choices_up_front_margin`), the right one is clicked instead of rating.
Clicks are never flipped. This is how demos, tests and benchmarks create traffic.
"""

from __future__ import annotations

import csv
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests

from . import choices
from .assistant import RATE_INTENT
from .errors import DataError, RsftError
from .log import ConversationLog, Turn

TEXT_COLUMNS = ("question", "instruction", "text")
LABEL_COLUMNS = ("topic", "intent", "category", "label")


_RATE_PREFIX = f"/{RATE_INTENT}"  # how a 👍/👎 button's payload starts (assistant.rating_buttons)

@dataclass
class SimulationResult:
    asked: int = 0
    answered: int = 0
    correct: int = 0
    rated_up: int = 0
    rated_down: int = 0
    flipped: int = 0
    failed: int = 0
    not_understood: int = 0  # the bot said it did not understand (topic buttons, nothing to rate)
    choices_offered: int = 0  # answers after which "Was it one of these?" was asked (after a 👎 or up front)
    picked: int = 0  # ... and the right answer was among the choices and clicked
    none_of_these: int = 0  # ... and it was not: "None of these"

    @property
    def served_accuracy(self) -> float:
        return self.correct / self.answered if self.answered else 0.0

    @property
    def served_within_one_click(self) -> float:
        """The share of answered customers who got the right answer directly or with one click on a choice."""
        return (self.correct + self.picked) / self.answered if self.answered else 0.0


def read_labelled(path: str | Path, split: str | None = None) -> list[tuple[str, str]]:
    """(question, label) rows of a CSV with a text column (question/instruction/text) and a label column
    (topic/intent/category/label); with `split`, only rows whose `split` column equals it.

    Raises:
        DataError: missing file or columns.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            text = next((c for c in TEXT_COLUMNS if c in columns), None)
            label = next((c for c in LABEL_COLUMNS if c in columns), None)
            if text is None or label is None:
                raise DataError(f"{path}: needs a text column {TEXT_COLUMNS} and a label column {LABEL_COLUMNS}")
            if split is not None and "split" not in columns:
                raise DataError(f"{path}: --split given but the file has no split column")
            return [(row[text], row[label]) for row in reader
                    if row[text] and row[label] and (split is None or row.get("split") == split)]
    except FileNotFoundError as exc:
        raise DataError(f"dataset {path} does not exist") from exc


def simulate(rows: list[tuple[str, str]], n: int, noise: float, rasa_url: str, log: ConversationLog, seed: int = 0,
             concurrency: int = 4, timeout: float = 60.0) -> SimulationResult:
    """Ask `n` questions drawn from `rows` (without replacement while possible) and rate every answer."""
    if not 0 <= noise <= 1:
        raise RsftError(f"noise must be between 0 and 1, got {noise}")
    if not rows:
        raise DataError("no labelled questions to simulate")
    rng = np.random.default_rng(seed)
    picks = rng.permutation(len(rows)).tolist() * (n // len(rows) + 1)
    plan = [(f"sim-{seed}-{i}", *rows[picks[i]], bool(rng.random() < noise)) for i in range(n)]
    result = SimulationResult()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for outcome in pool.map(lambda p: _one(p, rasa_url, log, timeout), plan):
            _tally(result, outcome)
    return result


def _one(plan: tuple[str, str, str, bool], rasa_url: str, store: ConversationLog, timeout: float) -> dict:
    sender, question, label, flip = plan
    try:
        messages = _say(rasa_url, sender, question, timeout)
        rating_buttons = [b for m in messages for b in m.get("buttons") or []
                          if str(b.get("payload", "")).startswith(_RATE_PREFIX)]
        if not rating_buttons:  # Rasa's own intents, or a not-understood reply whose buttons offer topics
            return {"answered": False, "not_understood": any(m.get("buttons") for m in messages)}
        payloads = {json.loads(b["payload"][len(_RATE_PREFIX):])["score"]: b["payload"] for b in rating_buttons}
        turn_id = json.loads(payloads[1][len(_RATE_PREFIX):])["turn_id"]
        turn = store.turn(turn_id)
        correct = turn is not None and turn.answer_topic == label
        up_front = choices.pick(_offered(messages, turn), label)
        if not correct and up_front != choices.NONE_OF_THESE:  # the right one is right there: clicked, not rated
            _say(rasa_url, sender, choices.choose_payload(turn_id, up_front), timeout)
            return {"answered": True, "correct": False, "score": None, "flipped": False, "clicked": "picked"}
        score = int(correct) ^ int(flip)
        after = _say(rasa_url, sender, payloads[score], timeout)
        offered = _offered(after, turn)
        clicked = None
        if offered:
            chosen = choices.pick(offered, label)
            _say(rasa_url, sender, choices.choose_payload(turn_id, chosen), timeout)
            clicked = "none_of_these" if chosen == choices.NONE_OF_THESE else "picked"
        return {"answered": True, "correct": correct, "score": score, "flipped": flip, "clicked": clicked}
    except (requests.RequestException, KeyError, ValueError):
        return {"failed": True}


def _offered(messages: list[dict], turn: Turn | None) -> list[tuple[str, str]]:
    """(answer id, topic) of the choice buttons in `messages` ("None of these" left out), topics from the turn's
    logged top_k — the set the bot offers is taken from it (choices.offered_answers)."""
    topics = {k.get("answer_id"): k.get("topic") for k in (turn.top_k if turn else [])}
    offered = []
    for button in (b for m in messages for b in m.get("buttons") or []):
        parsed = choices.parse_choice(button.get("payload"))
        if parsed and parsed[1] != choices.NONE_OF_THESE:
            offered.append((parsed[1], topics.get(parsed[1]) or ""))
    return offered


def _say(rasa_url: str, sender: str, message: str, timeout: float) -> list[dict]:
    response = requests.post(f"{rasa_url}/webhooks/rest/webhook", json={"sender": sender, "message": message},
                             timeout=timeout)
    response.raise_for_status()
    return response.json()


def _tally(result: SimulationResult, outcome: dict) -> None:
    result.asked += 1
    if outcome.get("failed"):
        result.failed += 1
        return
    if not outcome["answered"]:
        result.not_understood += int(outcome.get("not_understood", False))
        return
    result.answered += 1
    result.correct += int(outcome["correct"])
    result.flipped += int(outcome["flipped"])
    if outcome["score"] == 1:
        result.rated_up += 1
    elif outcome["score"] == 0:
        result.rated_down += 1
    if outcome.get("clicked"):
        result.choices_offered += 1
        result.picked += int(outcome["clicked"] == "picked")
        result.none_of_these += int(outcome["clicked"] == "none_of_these")
