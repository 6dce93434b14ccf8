"""The plugin's log: turns, ratings, rounds, answer-bank edits, jobs and hand-offs, behind interfaces split by concept.

`open_log(config)` builds the configured backend: the embedded SQLite file at `paths.db` (the default), or the
PostgreSQL database named by `log.url`. Only the composition root (`rsft_plugin.parts`) and tests call it;
everything else is handed the log.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .interfaces import (
    AnswerBankLog,
    ConversationLog,
    HandoffLog,
    JobLog,
    Log,
    MaintenanceLog,
    RoundLog,
    SignalLog,
)
from .records import (
    HANDOFF_REASONS,
    HANDOFF_STATUSES,
    IMPLICIT_KINDS,
    LABEL,
    RESOLVED,
    SETTLING_KINDS,
    SIGNAL_KINDS,
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
from .sqlite import SCHEMA_VERSION, SqliteLog, utc_now

if TYPE_CHECKING:
    from .postgres import PostgresLog

# name -> "module:class" of each backend; a backend's module is imported when it is used (so an SQLite install
# never imports the PostgreSQL driver).
BACKENDS = {"sqlite": "rsft_plugin.log.sqlite:SqliteLog", "postgres": "rsft_plugin.log.postgres:PostgresLog"}

__all__ = [
    "HANDOFF_REASONS", "HANDOFF_STATUSES", "IMPLICIT_KINDS", "LABEL", "RESOLVED", "SCHEMA_VERSION", "SETTLING_KINDS",
    "SIGNAL_KINDS",
    "AnswerBankLog",
    "AnswerRevision", "CandidateRow", "ConversationLog", "ConversationSummary", "Handoff", "HandoffLog", "Job",
    "JobLog", "Log", "MaintenanceLog", "Publication", "RatingCounts", "RatingRecord", "RoundExample", "RoundLog",
    "RoundPrompt", "RoundRecord", "Signal", "SignalLog", "TrainingExample", "Turn", "TurnFacets", "TurnRecord",
    "VersionHandoffs", "backend_class", "describe_log", "open_log", "open_postgres", "open_sqlite", "utc_now",
]


def backend_class(name: str) -> type:
    """The class of backend `name` (a key of BACKENDS)."""
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def __getattr__(name: str) -> Any:
    if name == "PostgresLog":  # imported on first use, like the backend itself
        return backend_class("postgres")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_sqlite(path: str | Path) -> SqliteLog:
    """The SQLite log at `path` (created and migrated as needed)."""
    return SqliteLog(path)


def open_postgres(url: str) -> PostgresLog:
    """The PostgreSQL log at `url` (postgresql://...; migrated as needed).

    Raises:
        LogUnavailable: the server cannot be reached or refuses the login.
    """
    return backend_class("postgres")(url)


def open_log(config: object) -> Log:
    """The log named by the config: `log.url` when set (PostgreSQL), else the SQLite file at `paths.db`."""
    url = config.log.url  # type: ignore[attr-defined]
    return open_postgres(url) if url else open_sqlite(config.paths.db)  # type: ignore[attr-defined]


def describe_log(config: object) -> str:
    """Where the log is, for people (the URL's password hidden)."""
    log = config.log  # type: ignore[attr-defined]
    return f"PostgreSQL {log.shown_url()}" if log.url else f"SQLite {config.paths.db}"  # type: ignore[attr-defined]
