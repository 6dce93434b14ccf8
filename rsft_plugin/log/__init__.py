"""The plugin's log: turns, ratings, rounds, answer-bank edits and jobs, behind interfaces split by concept.

`open_log(config)` builds the configured backend (today: the embedded SQLite file at `paths.db`). Only the
composition root (`rsft_plugin.parts`) and tests call it; everything else is handed the log.
"""

from __future__ import annotations

from pathlib import Path

from .interfaces import AnswerBankLog, ConversationLog, JobLog, Log, MaintenanceLog, RoundLog
from .records import (
    AnswerRevision,
    CandidateRow,
    ConversationSummary,
    Job,
    Publication,
    RatingRecord,
    RoundExample,
    RoundPrompt,
    RoundRecord,
    TrainingExample,
    Turn,
    TurnFacets,
    TurnRecord,
)
from .sqlite import SCHEMA_VERSION, SqliteLog, utc_now

BACKENDS = {"sqlite": SqliteLog}

__all__ = [
    "SCHEMA_VERSION", "AnswerBankLog", "AnswerRevision", "CandidateRow", "ConversationLog", "ConversationSummary",
    "Job", "JobLog", "Log", "MaintenanceLog", "Publication", "RatingRecord", "RoundExample", "RoundLog",
    "RoundPrompt", "RoundRecord", "TrainingExample", "Turn", "TurnFacets", "TurnRecord", "open_log",
    "open_sqlite", "utc_now",
]


def open_sqlite(path: str | Path) -> SqliteLog:
    """The SQLite log at `path` (created and migrated as needed)."""
    return SqliteLog(path)


def open_log(config: object) -> Log:
    """The log named by the config (`paths.db`: the SQLite file)."""
    return open_sqlite(config.paths.db)  # type: ignore[attr-defined]
