"""Keeping the log safe: retention of raw text, forgetting a customer, and online backups."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from .log import MaintenanceLog
from .parts import Parts
from .pii import redact


def apply_retention(parts: Parts) -> int:
    """Redact raw text of turns, and the contact of hand-offs, older than `privacy.retention_days`; returns how many
    turns were redacted."""
    cutoff = (parts.clock() - timedelta(days=parts.config.privacy.retention_days)).isoformat(timespec="milliseconds")
    parts.log.redact_handoff_contacts_older_than(cutoff, redact)
    return parts.log.redact_older_than(cutoff, redact)


def forget_sender(log: MaintenanceLog, sender_id: str) -> dict[str, int]:
    """Delete one customer's turns, ratings and hand-offs (their contact too) and their traces in recorded
    rounds."""
    return log.forget(sender_id)


def backup_log(log: MaintenanceLog, destination: Path) -> dict[str, int]:
    """Online copy of the plugin's log to `destination` (a new file); returns the row counts copied."""
    return log.backup(destination)
