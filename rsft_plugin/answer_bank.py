"""The answer bank: the fixed set of answers the response model chooses from.

An answer may hold slots ({order_id}, {email}, {amount}); `render` fills them from the customer's message and
falls back to a neutral phrase, so an answer always reads as a sentence.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import DataError

ANSWERS_FILE = "answers.json"  # the bank a model version answers from, saved inside its directory

MAX_TITLE_CHARS = 60  # a title is shown on a button
_SLOT = re.compile(r"\{(\w+)\}")
_SLOT_PATTERNS = {
    "order_id": re.compile(r"(?:order\s*(?:no\.?|number|nr\.?|#)?\s*|#)(\d{4,12})\b", re.IGNORECASE),
    "email": re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    "amount": re.compile(r"[€$£]\s?\d+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?\s?(?:€|EUR|USD|GBP|dollars|euros|pounds)",
                         re.IGNORECASE),
}
_SLOT_DEFAULTS = {"order_id": "your order", "email": "your email address", "amount": "the amount"}
_SLOT_FORMATS = {"order_id": "order #{}"}


@dataclass(frozen=True)
class Answer:
    id: str
    topic: str
    category: str
    text: str
    title: str = ""  # a short customer-facing question ("Where is my order?"); optional

    @property
    def display_title(self) -> str:
        """The title, or one derived from the topic ("track_order" -> "Track order") when there is none."""
        return self.title or self.topic.replace("_", " ").strip().capitalize()


@dataclass(frozen=True)
class AnswerBank:
    answers: tuple[Answer, ...]

    def __post_init__(self) -> None:
        if not self.answers:
            raise DataError("the answer bank is empty")
        ids = [a.id for a in self.answers]
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        if duplicated:
            raise DataError(f"duplicate answer ids: {duplicated}")
        for answer in self.answers:
            unknown = set(_SLOT.findall(answer.text)) - set(_SLOT_DEFAULTS)
            if unknown:
                raise DataError(f"answer {answer.id}: unknown slot(s) {sorted(unknown)}; "
                                f"known slots are {sorted(_SLOT_DEFAULTS)}")

    def __len__(self) -> int:
        return len(self.answers)

    @property
    def ids(self) -> list[str]:
        return [a.id for a in self.answers]

    @property
    def topics(self) -> list[str]:
        return sorted({a.topic for a in self.answers})

    def get(self, answer_id: str) -> Answer:
        for answer in self.answers:
            if answer.id == answer_id:
                return answer
        raise KeyError(answer_id)

    def index_of(self, answer_id: str) -> int:
        return self.ids.index(answer_id)

    def content_hash(self) -> str:
        """sha256 of the bank's canonical JSON: a model version is only valid for the bank it was built on."""
        canonical = json.dumps(self.to_records(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def to_records(self) -> list[dict[str, str]]:
        """One dict per answer; `title` only when set, so a bank without titles keeps its earlier hash."""
        return [{k: v for k, v in asdict(a).items() if k != "title" or v} for a in self.answers]

    @classmethod
    def from_records(cls, records: Any, source: str = "answer bank") -> AnswerBank:
        if not isinstance(records, list):
            raise DataError(f"{source}: expected a list of answers")
        answers = []
        for n, record in enumerate(records, start=1):
            if not isinstance(record, dict):
                raise DataError(f"{source}: entry {n} is not a mapping")
            missing = [k for k in ("id", "topic", "text") if not str(record.get(k) or "").strip()]
            if missing:
                raise DataError(f"{source}: entry {n} lacks {missing}")
            unknown = set(record) - {"id", "topic", "category", "text", "title"}
            if unknown:
                raise DataError(f"{source}: entry {n} has unknown key(s) {sorted(unknown)}")
            answers.append(Answer(id=str(record["id"]).strip(), topic=str(record["topic"]).strip(),
                                  category=str(record.get("category") or "general").strip(),
                                  text=" ".join(str(record["text"]).split()),
                                  title=_title(record.get("title"), f"{source}: entry {n}")))
        return cls(tuple(answers))


def _title(value: Any, where: str) -> str:
    if value is None:
        return ""
    title = " ".join(str(value).split())
    if len(title) > MAX_TITLE_CHARS:
        raise DataError(f"{where}: title is longer than {MAX_TITLE_CHARS} characters")
    return title


def load_answer_bank(path: str | Path) -> AnswerBank:
    """Read data/answers.yml (`answers: [{id, topic, category, title, text}, ...]`; title is optional).

    Raises:
        DataError: missing file, bad YAML, missing fields, duplicate ids or unknown slots.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(f"answer bank {path} does not exist") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DataError(f"answer bank {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or "answers" not in raw:
        raise DataError(f"answer bank {path}: expected a mapping with an 'answers' list")
    return AnswerBank.from_records(raw["answers"], source=str(path))


def extract_slots(message: str) -> dict[str, str]:
    """Slot values found in the customer's message (order number, email, amount)."""
    found = {}
    for name, pattern in _SLOT_PATTERNS.items():
        match = pattern.search(message)
        if match:
            value = match.group(1) if match.groups() else match.group(0)
            found[name] = _SLOT_FORMATS.get(name, "{}").format(value.strip())
    return found


def render(text: str, message: str = "") -> str:
    """Fill an answer's slots from the message, or with neutral phrases; unknown braces are left alone."""
    values = {**_SLOT_DEFAULTS, **extract_slots(message)}
    return _SLOT.sub(lambda m: values.get(m.group(1), m.group(0)), text)
