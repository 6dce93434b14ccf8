"""Keeping the log safe: retention of raw text, forgetting a customer, and online backups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from .config import Config
from .pii import redact
from .store import Store


def apply_retention(config: Config) -> int:
    """Redact raw text of turns older than `privacy.retention_days`; returns how many turns were redacted."""
    cutoff = (datetime.now(UTC) - timedelta(days=config.privacy.retention_days)).isoformat(timespec="milliseconds")
    with Store(config.paths.db) as store:
        return store.redact_older_than(cutoff, redact)


def forget_sender(config: Config, sender_id: str) -> dict[str, int]:
    """Delete one customer's turns and ratings and their traces in recorded rounds."""
    with Store(config.paths.db) as store:
        return store.forget(sender_id)


def backup_log(config: Config, destination: Path) -> dict[str, int]:
    """Online copy of the plugin's log to `destination` (a new file); returns the row counts copied."""
    with Store(config.paths.db) as store:
        return store.backup(destination)
