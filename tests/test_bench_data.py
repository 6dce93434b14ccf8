"""The benchmark's own golden-style questions (bench/golden_truth.csv): they judge the gate on golden, so they must
be new questions (none of golden.csv's, none twice), each on a topic of the shop's bank, and never traffic or
held-out questions of a split."""

from __future__ import annotations

import csv
from collections import Counter

from bench.common import GOLDEN_TRUTH, _key, load_dataset
from rsft_plugin.golden import load_golden

from .conftest import REPO


def _truth_rows() -> list[tuple[str, str]]:
    with GOLDEN_TRUTH.open(newline="", encoding="utf-8") as handle:
        return [(row["question"], row["topic"]) for row in csv.DictReader(handle)]


def test_the_golden_truth_questions_are_new_and_on_the_banks_topics(bank):
    rows = _truth_rows()
    golden = {_key(q.question) for q in load_golden(REPO / "data" / "golden.csv", bank)}
    keys = Counter(_key(question) for question, _ in rows)
    assert [k for k, n in keys.items() if n > 1] == []
    assert sorted(set(keys) & golden) == []
    per_topic = Counter(topic for _, topic in rows)
    assert set(per_topic) == set(bank.topics) and min(per_topic.values()) >= 5


def test_the_golden_split_draws_its_truth_from_neither_traffic_nor_held_out(tmp_path):
    data = load_dataset("golden", tmp_path, 600, 400, seed=0, n_truth=1000)  # the full sizes: all of golden.csv used
    used = {_key(q) for q, _ in data.traffic + data.heldout}
    truth = [_key(q) for q, _ in data.truth]
    assert len(truth) == len(_truth_rows()) and not used & set(truth)
    again = load_dataset("golden", tmp_path, 600, 400, seed=0, n_truth=0)
    assert (again.traffic, again.heldout) == (data.traffic, data.heldout)  # the truth draw moves nothing
