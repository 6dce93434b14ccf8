"""The generative kind's gate on constructed per-question outcomes: the capped sample, the sign test, the rule "not
significantly worse on any of the three measures, significantly better on one (Holm over three)" and the numbers
every refusal quotes. Plain functions and stand-in writers: no model is loaded here."""

from __future__ import annotations

import pytest

from rsft_plugin.config import ConfigError, GateConfig, load_config
from rsft_plugin.generative.quality import WrittenOutcome
from rsft_plugin.golden import GoldenQuestion
from rsft_plugin.stages.gate import gate, judge
from rsft_plugin.stages.gate_written import written_evidence, written_sample
from rsft_plugin.stages.paired import PairedCounts
from rsft_plugin.stages.records import GateEvidence

GATE = GateConfig()  # level 0.2, writer_worse_level 0.05, topic_level 0.05


def questions(n: int, topics: int = 4) -> list[GoldenQuestion]:
    return [GoldenQuestion(f"question number {i}", f"topic{i % topics}", "heldout") for i in range(n)]


def same(n: int, topic: bool = True, similarity: float = 0.6, faithful: bool = True) -> list[WrittenOutcome]:
    return [WrittenOutcome(topic, similarity, faithful, False) for _ in range(n)]


def changed(live: list[WrittenOutcome], first: int, **fields) -> list[WrittenOutcome]:
    """`live` with the first `first` outcomes changed to `fields`."""
    return [WrittenOutcome(**{**o.__dict__, **fields}) if i < first else o for i, o in enumerate(live)]


def verdict(live: list[WrittenOutcome], candidate: list[WrittenOutcome], config: GateConfig = GATE):
    return judge(written_evidence(live, candidate, questions(len(live))), config)


# ---- the rule ----------------------------------------------------------------------------------------------------

def test_significantly_better_topic_correctness_promotes_with_its_numbers():
    live = same(20, topic=False)
    result = verdict(live, changed(live, 8, topic_right=True))
    assert result.promote, result.reason
    assert "better on one (topic-correct): topic-correct 0.0% -> 40.0%, 8 better, 0 worse of the 8 changed (of 20)" in \
        result.reason
    assert "exact McNemar one-sided p (better) = 0.00391, Holm-adjusted over the three measures p = 0.0117" in \
        result.reason
    assert result.candidate_accuracy == pytest.approx(0.4) and result.live_accuracy == 0.0


def test_significantly_more_violations_refuse_even_when_topics_improve():
    live = same(20, topic=False)
    candidate = changed(changed(live, 8, topic_right=True), 6, faithful=False)
    result = verdict(live, candidate)
    assert not result.promote
    assert result.reason == ("the written violations test failed: violations 0.0% -> 30.0%, 0 better, 6 worse of the "
                             "6 changed (of 20): exact McNemar one-sided p (worse) = 0.0156 <= level 0.05")
    assert [c.subject for c in result.failed] == ["violations"]


def test_a_few_more_violations_are_not_significant_and_do_not_block():
    live = same(20, topic=False)
    candidate = changed(changed(live, 8, topic_right=True), 2, faithful=False)  # p (worse) = 1/4
    assert verdict(live, candidate).promote


def test_similarity_uses_the_sign_test_and_needs_the_mean_to_rise():
    live = same(12, similarity=0.5)
    closer = changed(live, 10, similarity=0.6)  # 10 closer of 10 changed: p = 1/1024
    result = verdict(live, closer)
    assert result.promote and "better on one (similarity): mean similarity 0.500 -> 0.583, 10 closer, 0 further" in \
        result.reason and "sign test" in result.reason
    # 10 replies a little closer, 2 much further: most are closer but the mean fell -> not "better"
    mixed = [WrittenOutcome(True, 0.52, True, False)] * 10 + [WrittenOutcome(True, 0.0, True, False)] * 2
    refused = verdict(live, mixed)
    assert not refused.promote
    assert "no measure significantly better" in refused.reason


def test_an_unchanged_writer_is_refused_for_lack_of_evidence():
    live = same(10)
    result = verdict(live, list(live))
    assert not result.promote
    assert result.reason.startswith("the written better-on-one test failed: no measure significantly better")
    assert "0 better, 0 worse of the 0 changed (of 10)" in result.reason and "> level 0.2" in result.reason


def test_holm_over_the_three_measures_is_applied():
    live = same(20, topic=False)
    assert verdict(live, changed(live, 4, topic_right=True)).promote  # p = 1/16, adjusted 3/16 = 0.1875 <= 0.2
    live_one = list(live)
    live_one[18] = WrittenOutcome(True, 0.6, True, False)  # the live writer alone gets this one right
    result = verdict(live_one, changed(live, 5, topic_right=True))  # 5 wins, 1 loss: p = 7/64 = 0.109 <= 0.2 ...
    better = next(c for c in result.checks if c.check == "written_better")
    assert better.p_value == pytest.approx(7 / 64) and better.adjusted_p == pytest.approx(21 / 64)
    assert not result.promote and "Holm-adjusted over the three measures p = 0.328 > level 0.2" in result.reason


def test_level_one_always_promotes_a_writer_that_is_not_significantly_worse():
    live = same(6)
    assert verdict(live, list(live), GateConfig(level=1.0, topic_level=0.0, rated_level=0.0)).promote


def test_writer_worse_level_zero_turns_the_worse_tests_off():
    live = same(20, topic=False)
    candidate = changed(changed(live, 8, topic_right=True), 6, faithful=False)
    lenient = GateConfig(writer_worse_level=0.0)
    result = verdict(live, candidate, lenient)
    assert result.promote and not [c for c in result.checks if c.check == "written_worse"]


def test_a_topic_significantly_worse_blocks_a_writer_too():
    qs = [GoldenQuestion(f"q{i}", "returns" if i < 8 else f"other{i % 3}", "heldout") for i in range(40)]
    live = [WrittenOutcome(i < 8, 0.6, True, False) for i in range(40)]
    candidate = [WrittenOutcome(8 <= i < 30, 0.6, True, False) for i in range(40)]
    result = judge(written_evidence(live, candidate, qs), GateConfig(writer_worse_level=0.0))
    assert not result.promote
    assert "the topic test failed: topic returns 100% -> 0%" in result.reason


def test_the_verdict_is_recomputed_from_the_stored_evidence():
    live = same(20, topic=False)
    found = written_evidence(live, changed(live, 8, topic_right=True), questions(20))
    again = GateEvidence.from_dict(found.to_dict())
    assert again == found
    assert judge(again, GATE).reason == judge(found, GATE).reason
    assert found.written.live["topic_correct"] == 0.0 and found.written.candidate["topic_correct"] == 0.4


def test_sign_counts_treat_tiny_differences_as_ties():
    counts = PairedCounts.of_scores([0.5, 0.5, 0.5, 0.5], [0.5 + 1e-8, 0.6, 0.4, 0.5])
    assert (counts.n, counts.wins, counts.losses) == (4, 1, 1)
    with pytest.raises(ValueError):
        PairedCounts.of_scores([0.1], [])


# ---- the capped sample and the dispatch --------------------------------------------------------------------------

def test_the_written_sample_is_capped_stable_and_covers_the_topics():
    heldout = questions(40, topics=5)
    chosen = written_sample(heldout, 10, seed=0)
    assert len(chosen) == 10 and len({q.topic for q in chosen}) == 5
    assert written_sample(list(reversed(heldout)), 10, seed=0) == chosen  # order of the file does not matter
    assert written_sample(heldout, 10, seed=1) != chosen  # the round's seed does
    assert written_sample(heldout, 0, seed=0) == heldout and written_sample(heldout, 99, seed=0) == heldout


class _Writer:
    """A stand-in writer: topic right for the questions in `right`; records which questions it was asked."""

    def __init__(self, right: set[str]) -> None:
        self.right, self.asked = right, []

    def writing_outcomes(self, qs: list[GoldenQuestion]) -> list[WrittenOutcome]:
        self.asked.append([q.question for q in qs])
        return [WrittenOutcome(q.question in self.right, 0.5, True, False) for q in qs]


def test_gate_judges_writers_on_the_capped_sample_only():
    heldout = questions(30)
    live, candidate = _Writer(set()), _Writer({q.question for q in heldout})
    result = gate(live, candidate, heldout, [], GateConfig(max_written_questions=8), seed=3)
    expected = [q.question for q in written_sample(heldout, 8, 3)]
    assert live.asked == [expected] and candidate.asked == [expected]
    assert result.promote and result.evidence.written.topic.n == 8 and result.evidence.rated is None


@pytest.mark.parametrize(("values", "key"), [
    ({"max_written_questions": -1}, "gate.max_written_questions"),
    ({"writer_worse_level": 0.5}, "gate.writer_worse_level"),
])
def test_bad_written_gate_settings_are_refused(tmp_path, values, key):
    path = tmp_path / "rsft.yml"
    path.write_text("gate:\n" + "".join(f"  {k}: {v}\n" for k, v in values.items()), encoding="utf-8")
    with pytest.raises(ConfigError, match=key):
        load_config(path)
