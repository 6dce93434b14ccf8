"""Typed rows that cross the log's boundary. Every backend returns these, never its own row objects.

Records are frozen dataclasses. `record["field"]` reads a field by name too (for code written against the old
row dicts, such as stage helpers and tests); `to_dict()` gives a JSON-ready dict for the web API and exports.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

JOB_KINDS = ("round", "publish_bank")
JOB_ACTIVE = ("queued", "running")
JOB_DONE = ("finished", "failed")
ABANDONED = "its process ended without finishing (killed or crashed)"
ROUND_ABANDONED = "the round's process ended without finishing (killed or crashed)"
HANDOFF_REASONS = ("asked", "repeated_thumbs_down", "low_score")
HANDOFF_STATUSES = ("open", "taken", "closed")
HANDOFF_MOVES = {"open": ("taken", "closed"), "taken": ("closed",), "closed": ()}  # status -> where it may go


def refused_handoff_move(handoff_id: int, current: str, wanted: str) -> str | None:
    """Why a hand-off in status `current` cannot move to `wanted` (None when it can); both backends ask this."""
    if wanted in HANDOFF_MOVES[current]:
        return None
    return f"hand-off {handoff_id} is {current}; it cannot be {wanted} now"
CONTACT_STATES = ("pending", "given", "declined")
# What a customer told us about an answer besides 👍/👎 (issue 11): their pick among "Was it one of these?" (choice:
# reply_key = the answer picked; none_of_these), what they did right after it (implicit signals), and which answer
# settled a question the bot had missed once they put it in other words (resolved: reply_key = that answer); and,
# kept under the turn's sender so that forgetting a customer forgets it, an operator's label (reply_key = right answer).
CHOICE_KINDS = ("choice", "none_of_these")
IMPLICIT_KINDS = ("reask", "asked_human", "thanks")
RESOLVED = "resolved"
LABEL = "label"
SIGNAL_KINDS = CHOICE_KINDS + IMPLICIT_KINDS + (RESOLVED, LABEL)
SETTLING_KINDS = ("choice", RESOLVED)  # they name the answer that settled their question: one per turn


def refused_signal(kind: str, reply_key: str | None, owner: str | None, sender_id: str,
                   earlier_kinds: set[str]) -> str | None:
    """Why a signal cannot be recorded (None when it can): both backends ask this inside their write transaction.

    `owner` is the sender of the turn it refers to (None: no such turn); `earlier_kinds` the kinds already
    recorded for that turn. A turn takes one answer to "Was it one of these?", one implicit signal, any labels.
    """
    if kind not in SIGNAL_KINDS:
        return f"a signal is one of {list(SIGNAL_KINDS)}, not {kind!r}"
    if (kind in SETTLING_KINDS or kind == LABEL) and not reply_key:
        return f"a {kind} signal names the answer"
    if owner is None:
        return "there is no answer with that id"
    if owner != sender_id:
        return "that answer was given in another conversation"
    if kind in CHOICE_KINDS and earlier_kinds & set(CHOICE_KINDS):
        return "that question was already answered"
    if kind in IMPLICIT_KINDS and earlier_kinds & set(IMPLICIT_KINDS):
        return "that answer already has a signal of what came after it"
    if kind == RESOLVED and earlier_kinds & set(SETTLING_KINDS):
        return "that question was already settled"
    return None  # asked for and not answered yet | an email | the customer said no


class Record:
    """Read-by-name and conversion helpers shared by every record."""

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_row(cls, row: dict[str, Any], **overrides: Any) -> Any:
        """Build from a backend row, ignoring columns the record does not name."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in {**row, **overrides}.items() if k in names})


# ---- conversations --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TurnRecord(Record):
    """What the bot answered to one customer message (what `log_turn` writes).

    `reply_key` identifies the served reply (retrieval: the answer id, the default); `answer_id` may be None for a
    reply that is not from the answer bank. `writing` is set for a reply the generative kind wrote (or meant to
    write): {grounding_ids, fallback, reason, prompt_tokens, new_tokens, writer_ms}; None for a bank answer.
    """

    sender_id: str
    message_id: str | None
    user_text: str
    answer_id: str | None
    answer_topic: str
    answer_text: str
    model_version: str
    score: float
    probability: float
    top_k: list[dict[str, Any]]
    latency_ms: float
    reply_key: str | None = None
    writing: dict[str, Any] | None = None


@dataclass(frozen=True)
class RatingRecord(Record):
    turn_id: str
    sender_id: str
    score: int
    created_at: str
    replaced: bool  # True when it replaced an earlier rating of the same turn


@dataclass(frozen=True)
class Signal(Record):
    """A choice, implicit signal or label about one turn, read with that turn's question, version and served reply.
    `reply_key` is the answer it is about: the one picked (choice), the one the turn served (implicit), the right
    one by an operator (label), or None ("None of these": about every answer offered).
    """

    id: int
    turn_id: str
    sender_id: str
    kind: str
    reply_key: str | None
    created_at: str
    user_text: str | None = None
    model_version: str | None = None
    served_key: str | None = None
    served_answer_id: str | None = None  # the bank answer the turn served or (a written reply) was written from


@dataclass(frozen=True)
class RatingCounts(Record):
    """👍 and 👎 on the turns one model version answered in a window (a live signal of that version)."""

    up: int
    down: int


@dataclass(frozen=True)
class Turn(Record):
    """A logged turn with its rating (None when unrated)."""

    id: str
    sender_id: str
    user_text: str
    answer_id: str | None
    answer_topic: str | None
    created_at: str
    rating: int | None = None
    rated_at: str | None = None
    reply_key: str | None = None
    message_id: str | None = None
    answer_text: str | None = None
    model_version: str | None = None
    score: float | None = None
    probability: float | None = None
    top_k: list[dict[str, Any]] = field(default_factory=list)
    latency_ms: float | None = None
    redacted: bool = False
    writing: dict[str, Any] | None = None  # how a written reply was written (TurnRecord.writing)


@dataclass(frozen=True)
class ConversationSummary(Record):
    """One conversation in the inbox: counts, lowest score, versions, and its newest matching question."""

    sender_id: str
    turns: int
    first_at: str
    last_at: str
    down: int
    up: int
    min_score: float | None
    versions: list[str]
    matching_turns: int
    question: str | None


@dataclass(frozen=True)
class TurnFacets(Record):
    """What the inbox can filter on."""

    topics: list[str]
    versions: list[str]
    first_at: str | None
    last_at: str | None
    conversations: int


# ---- rounds ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundRecord(Record):
    """One fine-tuning round as recorded: status (running | promoted | kept | stopped | failed) and its numbers."""

    id: int
    status: str
    stage: str
    progress: float
    message: str
    started_at: str
    live_version: str
    rule: str
    finished_at: str | None = None
    new_version: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    report_dir: str | None = None
    pid: int | None = None
    job_id: int | None = None

    @property
    def gate(self) -> dict[str, Any]:
        """The gate's numbers from `stats` ({} when the round did not reach the gate)."""
        return self.stats.get("gate") or {}


@dataclass(frozen=True)
class RoundPrompt(Record):
    """A prompt a round collected, with the turns it came from."""

    prompt_id: int
    text: str
    turn_ids: list[str]
    replay: bool = False
    gate_only: bool = False


@dataclass(frozen=True)
class CandidateRow(Record):
    """One sampled candidate of a round: its key and text, q, reward parts and whether it was accepted."""

    prompt_id: int
    draw: int
    candidate_key: str
    candidate_text: str | None
    answer_id: str | None
    topic: str | None
    q: float
    cosine: float | None
    similarity: float | None
    rating_up: float | None
    rating_down: float | None
    rating: float | None
    reward: float
    accept_probability: float
    accepted: bool
    rule: str
    sampled_by: str


@dataclass(frozen=True)
class RoundExample(Record):
    """A candidate with its prompt text (what a round report shows)."""

    prompt_id: int
    draw: int
    prompt: str | None
    candidate_key: str | None
    candidate_text: str | None
    answer_id: str | None
    topic: str | None
    q: float
    cosine: float | None
    similarity: float | None
    rating_up: float | None
    rating_down: float | None
    rating: float | None
    reward: float
    accept_probability: float
    accepted: bool
    sampled_by: str


@dataclass(frozen=True)
class TrainingExample(Record):
    """An accepted candidate with its provenance (a row of the `training_examples` view)."""

    round_id: int
    prompt_id: int
    prompt: str | None
    candidate_key: str | None
    candidate_text: str | None
    answer_id: str | None
    topic: str | None
    turn_ids: list[str]
    sampled_by: str
    rule: str
    q: float
    similarity: float | None
    rating_up: float | None
    rating_down: float | None
    rating: float | None
    reward: float
    accept_probability: float


# ---- answer bank edits ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerRevision(Record):
    id: int
    answer_id: str
    topic: str
    category: str
    text: str
    action: str  # add | edit
    note: str | None
    created_at: str


@dataclass(frozen=True)
class Publication(Record):
    """A publication of the edited answer bank: running | published | unchanged | failed."""

    id: int
    status: str
    started_at: str
    finished_at: str | None = None
    live_version: str | None = None
    new_version: str | None = None
    revision_id: int | None = None
    answers: int | None = None
    message: str | None = None
    pid: int | None = None
    job_id: int | None = None


# ---- jobs -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job(Record):
    """Long work started from the web or the CLI (a round, a bank publication): queued -> running -> finished|failed."""

    id: int
    kind: str
    status: str
    pid: int | None
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    message: str | None = None

    @property
    def active(self) -> bool:
        return self.status in JOB_ACTIVE


# ---- hand-offs to a person ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Handoff(Record):
    """A customer's request to talk to a person: why, which model was live, the queue status, the contact.

    `reason` is one of HANDOFF_REASONS, `status` one of HANDOFF_STATUSES (open -> taken -> closed, or open ->
    closed), `contact_state` one of CONTACT_STATES. `contact` is the customer's email (personal data).
    """

    id: int
    sender_id: str
    reason: str
    status: str
    created_at: str
    model_version: str | None = None
    contact: str | None = None
    contact_state: str = "pending"
    taken_by: str | None = None
    taken_at: str | None = None
    closed_by: str | None = None
    closed_at: str | None = None


@dataclass(frozen=True)
class VersionHandoffs(Record):
    """Hand-offs requested while a model version was live, against the turns it answered (a live signal)."""

    model_version: str
    handoffs: int
    answered_turns: int

    @property
    def per_100_answers(self) -> float | None:
        return 100.0 * self.handoffs / self.answered_turns if self.answered_turns else None
