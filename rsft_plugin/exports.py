"""Downloads for operators: accepted training examples, the conversation log and hand-offs, as JSONL or CSV.

Customer text passes through `pii.redact` on its way out (questions, prompts, answers, whose slots may hold
an email or an order number taken from the customer's message, and a hand-off's contact): an export is a copy
that leaves the live log, so it never carries personal data. CSV cells that a spreadsheet would run as a formula
are prefixed with `'`. Rows are produced one at a time, so an export of a large log streams instead of filling memory.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .errors import NotFound
from .log import ConversationLog, HandoffLog, RoundLog

FORMATS = {"jsonl": "application/x-ndjson; charset=utf-8", "csv": "text/csv; charset=utf-8"}


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    fields: tuple[str, ...]
    rows: Callable[[Any], Iterator[dict[str, Any]]]


def _training_examples(log: RoundLog) -> Iterator[dict[str, Any]]:
    redact = _redactor()
    for row in log.training_examples():
        yield {**row.to_dict(), "prompt": redact(row.prompt or ""),
               "candidate_text": redact(row.candidate_text) if row.candidate_text else row.candidate_text}


def _conversations(log: ConversationLog) -> Iterator[dict[str, Any]]:
    redact = _redactor()
    for row in log.iter_turns():
        yield {"turn_id": row.id, "sender_id": row.sender_id, "created_at": row.created_at,
               "question": redact(row.user_text or ""), "answer_id": row.answer_id, "reply_key": row.reply_key,
               "answer_topic": row.answer_topic, "answer_text": redact(row.answer_text or ""),
               "model_version": row.model_version, "score": row.score, "rating": row.rating,
               "rated_at": row.rated_at}


def _handoffs(log: HandoffLog) -> Iterator[dict[str, Any]]:
    redact = _redactor()
    for row in reversed(log.handoffs(limit=1_000_000)):  # oldest first, as the other exports
        yield {**row.to_dict(), "contact": redact(row.contact) if row.contact else row.contact}


DATASETS = {d.name: d for d in (
    Dataset("training-examples", "accepted (prompt, answer) pairs of every round, with reward parts and provenance",
            ("round_id", "prompt_id", "prompt", "candidate_key", "candidate_text", "answer_id", "topic", "turn_ids",
             "sampled_by", "rule", "q",
             "similarity", "rating_up", "rating_down", "rating", "reward", "accept_probability"),
            _training_examples),
    Dataset("conversations", "every logged turn with its answer, model version, score and rating",
            ("turn_id", "sender_id", "created_at", "question", "answer_id", "reply_key", "answer_topic", "answer_text",
             "model_version", "score", "rating", "rated_at"),
            _conversations),
    Dataset("handoffs", "every request to talk to a person: reason, live version, status, contact (redacted)",
            ("id", "sender_id", "created_at", "reason", "model_version", "status", "contact_state", "contact",
             "taken_by", "taken_at", "closed_by", "closed_at"),
            _handoffs),
)}


def export_lines(log: ConversationLog, dataset: str, fmt: str) -> Iterator[str]:
    """The export as text chunks (a header line first for CSV), read from `log` (a whole `Log`).

    Raises:
        NotFound: an unknown dataset or format (checked before anything is produced).
    """
    chosen = _dataset(dataset, fmt)
    return _lines(log, chosen, fmt)


def _lines(log: Any, chosen: Dataset, fmt: str) -> Iterator[str]:
    if fmt == "jsonl":
        for row in chosen.rows(log):
            yield json.dumps({k: row.get(k) for k in chosen.fields}, ensure_ascii=False) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(chosen.fields)
    for n, row in enumerate(chosen.rows(log), start=1):
        writer.writerow([_csv_cell(row.get(k)) for k in chosen.fields])
        if n % 200 == 0:
            yield _drain(buffer)
    yield _drain(buffer)


def _dataset(dataset: str, fmt: str) -> Dataset:
    if dataset not in DATASETS:
        raise NotFound(f"no export {dataset!r}; there are {sorted(DATASETS)}")
    if fmt not in FORMATS:
        raise NotFound(f"no format {fmt!r}; there are {sorted(FORMATS)}")
    return DATASETS[dataset]


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        value = json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _redactor() -> Callable[[str], str]:
    from .pii import redact  # personal data never leaves in an export

    return redact
