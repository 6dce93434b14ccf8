"""The golden set: customer questions labelled with the topic that should answer them.

`split` is `train` (rounds may learn from it, e.g. through simulated traffic) or `heldout` (never trained on;
it measures quality and gates promotions).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from .answer_bank import AnswerBank
from .errors import DataError

SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class GoldenQuestion:
    question: str
    topic: str
    split: str


def load_golden(path: str | Path, bank: AnswerBank | None = None, split: str | None = None) -> list[GoldenQuestion]:
    """Read data/golden.csv (columns question, topic, split), optionally one split only.

    Raises:
        DataError: missing file or columns, an unknown split, or a topic the bank does not have.
    """
    path = Path(path)
    if split is not None and split not in SPLITS:
        raise DataError(f"unknown split {split!r}; valid splits are {list(SPLITS)}")
    rows = _read_csv(path, "golden set", {"question", "topic", "split"})
    known_topics = set(bank.topics) if bank else None
    questions = []
    for line, row in enumerate(rows, start=2):
        question, topic, row_split = (str(row.get(k) or "").strip() for k in ("question", "topic", "split"))
        if not question or not topic:
            raise DataError(f"golden set {path}, line {line}: empty question or topic")
        if row_split not in SPLITS:
            raise DataError(f"golden set {path}, line {line}: split {row_split!r} is not one of {list(SPLITS)}")
        if known_topics is not None and topic not in known_topics:
            raise DataError(f"golden set {path}, line {line}: topic {topic!r} is not in the answer bank")
        if split is None or row_split == split:
            questions.append(GoldenQuestion(question, topic, row_split))
    return questions


@dataclass(frozen=True)
class OutOfScopeQuestion:
    question: str
    kind: str  # gibberish, filler, injection, chit-chat, general knowledge, ...


def load_out_of_scope(path: str | Path) -> list[OutOfScopeQuestion]:
    """Read data/out_of_scope.csv (columns question, kind): messages no answer in the bank should be given for.

    Raises:
        DataError: missing file or columns, or an empty question or kind.
    """
    path = Path(path)
    rows = _read_csv(path, "out-of-scope set", {"question", "kind"})
    questions = []
    for line, row in enumerate(rows, start=2):
        question, kind = (str(row.get(k) or "").strip() for k in ("question", "kind"))
        if not question or not kind:
            raise DataError(f"out-of-scope set {path}, line {line}: empty question or kind")
        questions.append(OutOfScopeQuestion(question, kind))
    return questions


def _read_csv(path: Path, what: str, columns: set[str]) -> list[dict[str, str]]:
    """Every row of a UTF-8 CSV that has at least `columns`.

    Raises:
        DataError: the file is missing or unreadable, or lacks a column (`what` names the file in the message).
    """
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = columns - set(reader.fieldnames or [])
            if missing:
                raise DataError(f"{what} {path}: missing column(s) {sorted(missing)}")
            return list(reader)
    except FileNotFoundError as exc:
        raise DataError(f"{what} {path} does not exist") from exc
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"{what} {path} is not a readable CSV: {exc}") from exc
