"""Top-1 accuracy of a response model on labelled questions, overall and per topic."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from .golden import GoldenQuestion
from .models.base import ResponsePolicy
from .text import clean_text


@dataclass(frozen=True)
class TopicScore:
    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


@dataclass(frozen=True)
class EvalReport:
    model_version: str
    n: int
    correct: int
    per_topic: dict[str, TopicScore] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    def to_dict(self) -> dict:
        return {"model_version": self.model_version, "n": self.n, "accuracy": round(self.accuracy, 4),
                "per_topic": {t: {"correct": s.correct, "total": s.total, "accuracy": round(s.accuracy, 4)}
                              for t, s in sorted(self.per_topic.items())}}


def answered_right(model: ResponsePolicy, questions: list[GoldenQuestion]) -> list[bool]:
    """Per question (batched, as served): is the chosen reply's topic the labelled one? What paired tests need."""
    answered = model.answer_many([clean_text(q.question) or "?" for q in questions])
    return [result.topic == question.topic for question, result in zip(questions, answered, strict=True)]


def evaluate(model: ResponsePolicy, questions: list[GoldenQuestion]) -> EvalReport:
    """Answer every question (batched) and count how often the chosen reply's topic is the labelled one."""
    hits: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for question, right in zip(questions, answered_right(model, questions), strict=True):
        hits[question.topic][1] += 1
        hits[question.topic][0] += int(right)
    per_topic = {topic: TopicScore(c, t) for topic, (c, t) in hits.items()}
    return EvalReport(model.name, len(questions), sum(s.correct for s in per_topic.values()), per_topic)


def format_report(report: EvalReport, title: str = "") -> str:
    """A plain-text table: one row per topic, worst first, then the total."""
    width = max([len(t) for t in report.per_topic] + [len("topic")])
    lines = [title] if title else []
    lines.append(f"{'topic':<{width}}  correct  total  accuracy")
    for topic, score in sorted(report.per_topic.items(), key=lambda item: (item[1].accuracy, item[0])):
        lines.append(f"{topic:<{width}}  {score.correct:>7}  {score.total:>5}  {score.accuracy:>8.1%}")
    lines.append(f"{'ALL':<{width}}  {report.correct:>7}  {report.n:>5}  {report.accuracy:>8.1%}")
    return "\n".join(lines)
