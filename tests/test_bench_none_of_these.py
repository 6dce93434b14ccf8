"""bench/none_of_these.py: which "None of these" follow a 👎 on a right answer (the simulated customer's path)."""

from __future__ import annotations

import numpy as np

from bench.none_of_these import none_events, summarize

# 4 questions x 6 answers; answer a's topic is a. Rows are cosines; the served answer is each row's best.
COSINES = np.array([
    [0.90, 0.50, 0.40, 0.30, 0.20, 0.10],  # served 0 (right), runner-up far behind: a confident right answer
    [0.60, 0.55, 0.50, 0.45, 0.40, 0.35],  # served 0 (wrong: topic 5 is not offered): a 👎 is right to be given
    [0.70, 0.65, 0.30, 0.20, 0.10, 0.00],  # served 0 (wrong: topic 1 is offered and clicked)
    [0.20, 0.80, 0.10, 0.05, 0.00, 0.00],  # served 1 (right)
])
TOPICS = [f"topic{a}" for a in range(6)]
LABELS = ["topic0", "topic5", "topic1", "topic1"]


def test_an_honest_customer_says_none_of_these_only_after_a_wrong_answer_without_the_right_one_offered():
    events, fit = none_events(COSINES, TOPICS, LABELS, flips=np.zeros(4, dtype=bool))
    assert fit["thumbs_down"] == 2  # the two wrong answers
    assert [e.served_right for e in events] == [False]  # question 2's right answer was offered and clicked
    assert abs(events[0].margin - 0.05) < 1e-9


def test_a_careless_thumbs_down_on_a_right_answer_ends_in_none_of_these():
    flips = np.array([True, False, False, True])  # both right answers rated 👎
    events, fit = none_events(COSINES, TOPICS, LABELS, flips)
    assert fit["thumbs_down"] == 4
    assert sorted(e.served_right for e in events) == [False, True, True]
    summary = summarize(events)
    assert summary["none_of_these"] == 3 and summary["served_right"] == round(2 / 3, 3)
    # question 0's margin (0.4) and question 3's (0.6) are confident, question 1's (0.05) is not
    assert summary["confident"] == 2 and summary["confident_served_right"] == 1.0
