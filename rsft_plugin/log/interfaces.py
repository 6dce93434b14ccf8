"""What the rest of the plugin may ask of the log, split by concept. A backend implements all of them (`Log`).

Reads never write. Times are ISO-8601 UTC strings. Every method returns records from `records.py`.
A new backend (PostgreSQL, say) is one class implementing `Log` that passes tests/test_log_contract.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .records import (
    AnswerRevision,
    CandidateRow,
    ConversationSummary,
    Handoff,
    Job,
    Publication,
    RatingCounts,
    RatingRecord,
    RoundExample,
    RoundPrompt,
    RoundRecord,
    Signal,
    TrainingExample,
    Turn,
    TurnFacets,
    TurnRecord,
    VersionHandoffs,
)

IsAlive = Callable[[int | None], bool]
# the tables count() and backup() report
COUNTED = ("turns", "ratings", "rounds", "round_prompts", "round_candidates", "handoffs", "signals")


def utc_now() -> str:
    """Now as every backend stores it: ISO-8601 UTC with milliseconds, so text order is time order."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@runtime_checkable
class ConversationLog(Protocol):
    """Turns and their ratings; the inbox's queries; iteration for exports."""

    def log_turn(self, turn: TurnRecord) -> str:
        """Insert one turn; returns its id (32 hex characters)."""

    def rate(self, turn_id: str, sender_id: str, score: int, max_per_minute: int | None = None) -> RatingRecord:
        """Record 0/1 for a turn this sender was shown, replacing their earlier rating of it.

        Raises:
            RatingRefused: unknown turn, another sender's turn, not 0/1, or over `max_per_minute`; nothing written.
                The cap counts this sender's rating calls in the last minute (replacements of one turn and
                refused calls included), durably, so every process sharing the log shares the count.
        """

    def turn(self, turn_id: str) -> Turn | None: ...

    def recent_turns(self, limit: int = 20, sender_id: str | None = None) -> list[Turn]:
        """Newest first."""

    def rated_turns(self, exclude_turn_ids: set[str] | None = None, only_turn_ids: set[str] | None = None,
                    newest: int | None = None) -> list[Turn]:
        """Every rated turn, oldest first; with `only_turn_ids`, only the rated turns among those (a read bounded by
        the ids given, not by the log's length); with `newest`, only the newest that many (by when the turn was
        logged) not in `exclude_turn_ids` (a read bounded by `newest`, not by the log's history)."""

    def turns_for_round(self, since: str | None, limit: int) -> list[Turn]:
        """Turns logged after `since` (all when None), newest first."""

    def turns_before(self, until: str, limit: int) -> list[Turn]:
        """Turns logged up to `until`, newest first."""

    def ratings_since(self, since: str | None) -> int: ...

    def version_rating_counts(self, model_version: str, *, since: str | None = None, until: str | None = None,
                              newest: int | None = None, exclude_reply_key: str | None = None) -> RatingCounts:
        """👍/👎 on the rated turns `model_version` answered, logged in [since, until), only the `newest` of them when
        given, leaving out turns whose reply_key is `exclude_reply_key` (the live guard's evidence)."""

    def conversations(self, *, rating: str = "any", score_below: float | None = None, topic: str | None = None,
                      since: str | None = None, until: str | None = None, version: str | None = None,
                      text: str | None = None, sort: str = "newest", limit: int = 50,
                      offset: int = 0) -> tuple[int, list[ConversationSummary]]:
        """Conversations with a turn matching every filter: (how many, one page). Raises ValueError on a bad
        rating or sort."""

    def conversation(self, sender_id: str) -> list[Turn]:
        """Every turn of one conversation, oldest first."""

    def turn_facets(self) -> TurnFacets: ...

    def iter_turns(self, batch: int = 500) -> Iterator[Turn]:
        """Every turn, oldest first, read in batches."""

    def count(self, table: str) -> int:
        """Rows of a table in COUNTED (ValueError otherwise)."""


@runtime_checkable
class SignalLog(Protocol):
    """What customers told us about answers besides 👍/👎: choices after a 👎, and implicit signals."""

    def record_signal(self, turn_id: str, sender_id: str, kind: str, reply_key: str | None,
                      max_per_minute: int | None = None) -> Signal:
        """Record one signal (a kind of SIGNAL_KINDS) about a turn this sender was shown.

        Raises:
            SignalRefused: not a kind, a choice naming no answer, unknown turn, another sender's turn, a second
                answer to "Was it one of these?" or a second implicit signal for the turn, or over
                `max_per_minute` (the same per-sender count as ratings: every call counts); nothing written.
        """

    def signals(self, *, since: str | None = None, until: str | None = None, model_version: str | None = None,
                sender_id: str | None = None, exclude_turn_ids: set[str] | None = None,
                newest: int | None = None) -> list[Signal]:
        """Signals recorded in [since, until) about turns of `model_version` / by `sender_id` (all when None),
        oldest first, each with its turn's question, version and served reply; with `newest`, only the newest that
        many of them (by when they were recorded) about turns not in `exclude_turn_ids`."""


@runtime_checkable
class RoundLog(Protocol):
    """Rounds, their prompts and candidates, and the provenance of training examples."""

    def start_round(self, live_version: str, rule: str, params: dict[str, Any], pid: int,
                    job_id: int | None = None) -> int: ...

    def update_round(self, round_id: int, **fields: Any) -> None:
        """Set fields of a round (names of `RoundRecord`)."""

    def round(self, round_id: int) -> RoundRecord | None: ...

    def rounds(self, limit: int = 50) -> list[RoundRecord]:
        """Newest first."""

    def last_completed_round_start(self) -> str | None:
        """When the last promoted or kept round started."""

    def save_round_rows(self, round_id: int, prompts: list[RoundPrompt], candidates: list[CandidateRow]) -> None:
        """All or nothing."""

    def round_candidates(self, round_id: int) -> list[CandidateRow]: ...

    def round_examples(self, round_id: int, accepted: bool, limit: int = 50) -> tuple[int, list[RoundExample]]:
        """(how many, the first `limit` by reward, highest first)."""

    def training_examples(self, round_id: int | None = None) -> list[TrainingExample]: ...


@runtime_checkable
class AnswerBankLog(Protocol):
    """Edits of the answer bank and their publications."""

    def add_answer_revision(self, answer_id: str, topic: str, category: str, text: str, action: str,
                            note: str = "") -> AnswerRevision: ...

    def answer_revisions(self, answer_id: str | None = None, limit: int = 500) -> list[AnswerRevision]:
        """Newest first."""

    def latest_answer_revisions(self) -> list[AnswerRevision]:
        """The newest revision of each answer, in the order answers were first edited."""

    def start_publication(self, job_id: int) -> int:
        """A new publication row (running) belonging to job `job_id`; returns its id."""

    def update_publication(self, publication_id: int, **fields: Any) -> None: ...

    def publication(self, publication_id: int) -> Publication | None: ...

    def publications(self, limit: int = 10) -> list[Publication]:
        """Newest first."""


@runtime_checkable
class MaintenanceLog(Protocol):
    """Privacy and safety: retention, forgetting a customer, online backup."""

    def forget(self, sender_id: str) -> dict[str, int]:
        """Delete a sender's turns, ratings, signals, hand-offs and their traces in rounds; counts of
        turns/ratings/round_prompts/handoffs/signals."""

    def redact_older_than(self, cutoff: str, redact: Callable[[str], str]) -> int: ...

    def backup(self, destination: str | Path) -> dict[str, int]:
        """Copy everything to a new file; row counts. Raises FileExistsError when it exists."""


@runtime_checkable
class JobLog(Protocol):
    """One job table for rounds and bank publications."""

    def start_job(self, kind: str, pid: int, is_alive: IsAlive, *, exclusive: bool = True,
                  status: str = "running", message: str = "") -> Job:
        """Record a job. With `exclusive`, refuse while another job is active and alive.

        Raises:
            JobBusy: (exclusive only) carries the active job.
        """

    def update_job(self, job_id: int, **fields: Any) -> None:
        """Set status (queued | running | finished | failed), pid or message; finishing stamps finished_at."""

    def job(self, job_id: int) -> Job | None: ...

    def jobs(self, limit: int = 20, active_only: bool = False) -> list[Job]:
        """Newest first."""

    def fail_abandoned(self, is_alive: IsAlive) -> list[Job]:
        """Active jobs whose process is gone become failed, and so do their round or publication."""


@runtime_checkable
class HandoffLog(Protocol):
    """Requests to talk to a person: recorded by the bot, worked through by operators in the console."""

    def open_handoff(self, sender_id: str, reason: str, model_version: str | None) -> Handoff:
        """Record a new open hand-off (contact pending). Raises ValueError for a reason not in HANDOFF_REASONS."""

    def set_handoff_contact(self, handoff_id: int, contact: str | None) -> Handoff:
        """The customer's email (`contact_state` given), or None: they declined (declined).

        Raises:
            KeyError: no such hand-off.
        """

    def move_handoff(self, handoff_id: int, status: str, by: str) -> Handoff:
        """Take (open -> taken) or close (open | taken -> closed) a hand-off, stamping who and when.

        Raises:
            KeyError: no such hand-off.  ValueError: not a status.  Conflict: not allowed from its current status.
        """

    def handoff(self, handoff_id: int) -> Handoff | None: ...

    def handoffs(self, status: str | None = None, sender_id: str | None = None, limit: int = 100) -> list[Handoff]:
        """Newest first; `status` None means every status. Raises ValueError for an unknown status."""

    def handoff_counts(self) -> dict[str, int]:
        """How many hand-offs are in each status (every status, 0 included)."""

    def handoffs_by_version(self, unanswered_key: str) -> list[VersionHandoffs]:
        """Per model version (every version with a turn or a hand-off, by name): its hand-offs and the turns it
        answered (turns whose reply_key is not `unanswered_key`)."""

    def redact_handoff_contacts_older_than(self, cutoff: str, redact: Callable[[str], str]) -> int:
        """Apply `redact` to the contact of hand-offs recorded before `cutoff` (once each); returns how many."""


@runtime_checkable
class Log(ConversationLog, SignalLog, RoundLog, AnswerBankLog, MaintenanceLog, JobLog, HandoffLog, Protocol):
    """The whole log, as one backend provides it."""

    def close(self) -> None: ...
