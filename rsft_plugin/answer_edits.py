"""Editing the answer bank from the console, and publishing the edited bank as a new live model version.

How edits are versioned:
    - `data/answers.yml` is the curated starting bank (kept in git). The console never rewrites it.
    - Every add or edit is a new row of `answer_revisions` in the plugin's SQLite log (who never loses history:
      rows are only ever inserted). The *working bank* is answers.yml with the newest revision of each answer
      applied on top.
    - Edits reach customers only when an operator presses **Publish bank**: a separate process
      (`python -m rsft_plugin.answer_edits publish ID`, so the web server stays responsive and never loads a
      model) takes the live version's weights, puts the working bank under them (`ResponsePolicy.with_bank`, no
      retraining: answer embeddings are recomputed when the version loads), measures held-out accuracy, publishes
      it as a new immutable version whose parent is the live one, and flips the live pointer. Each publication
      is a row of `bank_publications`.
    - Rounds sample from and train on the live model's bank, so a published edit carries into every later round;
      an unpublished edit waits for the next publication (a round does not pick it up).
Publishing holds the round lock: a publication and a round never overlap, so neither can undo the other.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from typing import Any

from . import jobs
from .answer_bank import ANSWERS_FILE, AnswerBank, load_answer_bank
from .config import Config, load_config
from .errors import Conflict, DataError, InputError, JobBusy, NotFound, RsftError
from .log import AnswerBankLog, utc_now
from .models.registry import Registry
from .parts import Parts, build_parts

log = logging.getLogger(__name__)

_ID = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
_CATEGORY = re.compile(r"^[a-z][a-z0-9_ -]{0,39}$")
MIN_TEXT, MAX_TEXT, MAX_NOTE = 10, 2000, 300


def working_bank(config: Config, log: AnswerBankLog) -> tuple[AnswerBank, int | None]:
    """answers.yml with the newest revision of every edited or added answer; and the newest revision id."""
    records = {r["id"]: r for r in load_answer_bank(config.paths.answers).to_records()}
    newest = None
    for revision in log.latest_answer_revisions():
        records[revision.answer_id] = {**records.get(revision.answer_id, {}),  # keeps answers.yml's title
                                       "id": revision.answer_id, "topic": revision.topic,
                                       "category": revision.category, "text": revision.text}
        newest = max(newest or 0, revision.id)
    return AnswerBank.from_records(list(records.values()), source="working answer bank"), newest


def live_bank(registry: Registry) -> tuple[str | None, AnswerBank | None]:
    """The live version's name and the bank it answers from (read from its answers.json, no model loaded)."""
    name = registry.live_name()
    if name is None:
        return None, None
    try:
        path = registry.version_path(name) / ANSWERS_FILE
        return name, AnswerBank.from_records(json.loads(path.read_text(encoding="utf-8")), source=str(path))
    except (RsftError, OSError, ValueError):
        return name, None


def bank_overview(parts: Parts) -> dict[str, Any]:
    """Every answer of the working bank with its state against the live bank (live / edited / new)."""
    bank, newest = working_bank(parts.config, parts.log)
    revisions = parts.log.answer_revisions(limit=100_000)
    recent = publications(parts, 5)
    live_name, live = live_bank(parts.registry)
    live_by_id = {a.id: a for a in live.answers} if live else {}
    counts: dict[str, int] = {}
    updated: dict[str, str] = {}
    for revision in revisions:
        counts[revision.answer_id] = counts.get(revision.answer_id, 0) + 1
        updated.setdefault(revision.answer_id, revision.created_at)
    answers = []
    for answer in bank.answers:
        served = live_by_id.get(answer.id)
        state = "new" if served is None else ("live" if served == answer else "edited")
        answers.append({"id": answer.id, "topic": answer.topic, "category": answer.category, "text": answer.text,
                        "state": state, "live_text": served.text if served and state == "edited" else None,
                        "revisions": counts.get(answer.id, 0), "updated_at": updated.get(answer.id)})
    return {"live_version": live_name, "answers": answers,
            "pending": sum(a["state"] != "live" for a in answers),
            "newest_revision": newest, "topics": bank.topics,
            "categories": sorted({a.category for a in bank.answers}), "publications": recent}


def add_answer(parts: Parts, fields: Any) -> dict[str, Any]:
    """Add an answer to the working bank (id, topic, category, text; optional note).

    Raises:
        InputError: a missing or malformed field, or a slot the bank does not know.
        Conflict: an answer with this id exists already.
    """
    values = _fields(fields, required=("id", "topic", "text"), optional=("category", "note"))
    answer_id, topic = values["id"], values["topic"]
    for key in ("id", "topic"):
        if not _ID.match(values[key]):
            raise InputError(f"{key} must be 2-64 lowercase letters, digits or underscores, starting with a letter")
    category = _category(values.get("category") or "general")
    bank, _ = working_bank(parts.config, parts.log)
    if answer_id in bank.ids:
        raise Conflict(f"an answer with id {answer_id!r} exists already; edit it instead")
    text = _text(values["text"])
    _check_bank(bank.to_records() + [{"id": answer_id, "topic": topic, "category": category, "text": text}])
    return parts.log.add_answer_revision(answer_id, topic, category, text, "add", _note(values)).to_dict()


def edit_answer(parts: Parts, answer_id: str, fields: Any) -> dict[str, Any]:
    """Change an answer's text (and optionally its category) as a new revision.

    Raises:
        NotFound: no answer with this id in the working bank.
        InputError: a malformed field, an unknown slot, or nothing changed.
    """
    values = _fields(fields, required=("text",), optional=("category", "note"))
    bank, _ = working_bank(parts.config, parts.log)
    if answer_id not in bank.ids:
        raise NotFound(f"there is no answer {answer_id!r} in the answer bank")
    current = bank.get(answer_id)
    text = _text(values["text"])
    category = _category(values["category"]) if values.get("category") else current.category
    if text == current.text and category == current.category:
        raise InputError("nothing changed: the text and category are the same as the current ones")
    _check_bank([r if r["id"] != answer_id else {**r, "text": text, "category": category}
                 for r in bank.to_records()])
    return parts.log.add_answer_revision(answer_id, current.topic, category, text, "edit",
                                         _note(values)).to_dict()


def answer_history(parts: Parts, answer_id: str) -> dict[str, Any]:
    """An answer's revisions, newest first, and its text in data/answers.yml (None if it was added here).

    Raises:
        NotFound: the answer is neither in answers.yml nor added in the console.
    """
    original = {a.id: a for a in load_answer_bank(parts.config.paths.answers).answers}.get(answer_id)
    revisions = parts.log.answer_revisions(answer_id)
    if original is None and not revisions:
        raise NotFound(f"there is no answer {answer_id!r} in the answer bank")
    return {"id": answer_id, "original": original.text if original else None,
            "revisions": [r.to_dict() for r in revisions]}


def publications(parts: Parts, limit: int = 10) -> list[dict[str, Any]]:
    """Publications of the answer bank, newest first (dead 'running' ones are marked failed by the job sweep)."""
    jobs.sweep(parts.log)
    return [p.to_dict() for p in parts.log.publications(limit)]


def start_publication(parts: Parts) -> dict[str, Any]:
    """Start publishing the working bank in a process of its own; returns the publication row (running).

    Raises:
        Conflict: a publication or a round is running.
    """
    try:
        job = jobs.start(parts.log, jobs.PUBLISH_BANK)
    except JobBusy as busy:
        if busy.job is not None and busy.job.kind == jobs.ROUND:
            raise Conflict("a round is running; publish the answer bank when it has finished") from busy
        raise Conflict("the answer bank is being published already") from busy
    publication_id = parts.log.start_publication(job.id)
    pid = jobs.spawn(parts.config, parts.log, job, "rsft_plugin.answer_edits", ["publish", str(publication_id)],
                     "publish-bank.log")
    parts.log.update_publication(publication_id, pid=pid)
    return parts.log.publication(publication_id).to_dict()  # type: ignore[union-attr]


def publish_bank(parts: Parts, publication_id: int) -> dict[str, Any]:
    """Build a version from the live weights and the working bank, make it live, record the outcome.

    Runs in its own process (see the module docstring). Never raises for an expected failure: the outcome
    (published / unchanged / failed, with a message) is written to the publication's row and returned.
    """
    from .evaluate import evaluate
    from .golden import load_golden
    from .models import load_version
    from .rounds import RoundBusy, round_lock

    store = parts.log
    publication = store.publication(publication_id)
    job_id = publication.job_id if publication else None
    if job_id is not None:
        jobs.adopt(store, job_id)
    store.update_publication(publication_id, pid=os.getpid(), message="waiting for the round lock")
    try:
        with round_lock(parts.config.paths.run_dir):
            outcome = _publish_locked(parts, publication_id, load_version, evaluate, load_golden)
    except RoundBusy:
        outcome = {"status": "failed", "message": "a round is running; publish again when it has finished"}
    except RsftError as exc:
        outcome = {"status": "failed", "message": str(exc)}
    except Exception as exc:  # recorded for the operator; the live model is untouched
        log.exception("publication %s failed", publication_id)
        outcome = {"status": "failed", "message": f"{type(exc).__name__}: {exc}"}
    store.update_publication(publication_id, finished_at=utc_now(), **outcome)
    if job_id is not None:
        jobs.finish(store, job_id, outcome["status"] == "failed", outcome["message"])
    return {"id": publication_id, **outcome}


def _publish_locked(parts: Parts, publication_id: int, load_version: Any, evaluate: Any,
                    load_golden: Any) -> dict[str, Any]:
    config, registry, store = parts.config, parts.registry, parts.log
    bank, newest = working_bank(config, store)
    live_name, served = live_bank(registry)
    if live_name is None:
        raise RsftError("there is no live model yet; run `rsft init-model` first")
    store.update_publication(publication_id, live_version=live_name, revision_id=newest, answers=len(bank),
                             message="building the new version")
    if served is not None and served.content_hash() == bank.content_hash():
        return {"status": "unchanged", "message": f"{live_name} already answers from this bank; nothing to publish"}
    live = load_version(registry.live_path(), config.model)
    candidate = live.with_bank(bank)
    heldout = evaluate(candidate, load_golden(config.paths.golden, bank, "heldout"))
    info = registry.publish(candidate, parent=live.name,
                            eval_numbers={"heldout_accuracy": round(heldout.accuracy, 4), "heldout_n": heldout.n},
                            notes=f"answer bank edited in the console (revisions up to #{newest}); "
                                  f"weights of {live.name}")
    registry.set_live(info.name, f"answer bank published from the console (publication {publication_id})")
    return {"status": "published", "new_version": info.name,
            "message": f"{info.name} is live: {live.name}'s weights with the edited bank "
                       f"(held-out accuracy {heldout.accuracy:.1%})"}


def _fields(fields: Any, required: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, str]:
    if not isinstance(fields, dict):
        raise InputError("expected a JSON object with the answer's fields")
    unknown = sorted(set(fields) - set(required) - set(optional))
    if unknown:
        raise InputError(f"unknown field(s) {unknown}; valid fields are {sorted(required + optional)}")
    values = {}
    for key in required + optional:
        value = fields.get(key)
        if value is None:
            if key in required:
                raise InputError(f"{key} is required")
            continue
        if not isinstance(value, str):
            raise InputError(f"{key} must be text")
        values[key] = value.strip()
        if key in required and not values[key]:
            raise InputError(f"{key} must not be empty")
    return values


def _text(text: str) -> str:
    text = " ".join(text.split())
    if not MIN_TEXT <= len(text) <= MAX_TEXT:
        raise InputError(f"an answer's text is {MIN_TEXT} to {MAX_TEXT} characters long")
    return text


def _category(category: str) -> str:
    category = category.strip().lower()
    if not _CATEGORY.match(category):
        raise InputError("category must be 1-40 lowercase letters, digits, spaces, dashes or underscores")
    return category


def _note(values: dict[str, str]) -> str:
    note = values.get("note", "")
    if len(note) > MAX_NOTE:
        raise InputError(f"a note is at most {MAX_NOTE} characters")
    return note


def _check_bank(records: list[dict[str, str]]) -> None:
    try:
        AnswerBank.from_records(records)
    except DataError as exc:
        raise InputError(str(exc).removeprefix("answer bank: ")) from exc


def main(argv: list[str] | None = None) -> int:
    """`python -m rsft_plugin.answer_edits [--config rsft.yml] publish ID` (what the console starts)."""
    parser = argparse.ArgumentParser(prog="python -m rsft_plugin.answer_edits",
                                     description="Publish the console-edited answer bank as a new live version.")
    parser.add_argument("--config", default=None, help="rsft.yml to use (default: $RSFT_CONFIG or ./rsft.yml).")
    parser.add_argument("action", choices=["publish"])
    parser.add_argument("publication_id", type=int, help="The bank_publications row the console created.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with build_parts(load_config(args.config)) as parts:
        outcome = publish_bank(parts, args.publication_id)
    print(json.dumps(outcome, default=str), flush=True)
    return 0 if outcome.get("status") != "failed" else 1


if __name__ == "__main__":
    sys.exit(main())
