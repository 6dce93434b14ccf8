"""Model versions on disk and the live pointer.

    models_dir/
      v0001/ v0002/ ...     immutable versions of any kind (see base.py; retrieval.py for the retrieval kind's files)
      .staging-*/           a version being written; renamed into place only when complete
      LIVE                  one line: the name of the live version, replaced atomically with os.replace
      pointer-log.jsonl     every change of LIVE, for rollback and audit

A version becomes visible under its name only by a rename of a finished directory, so a crash while writing
leaves a `.staging-*` folder that is never listed, never promotable and is swept on the next write.

This module imports no torch: the web server lists and promotes versions through it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError, RegistryError
from ..faults import checkpoint
from ..file_lock import exclusive_lock
from .base import ResponsePolicy, VersionInfo, read_version_info

POINTER_FILE = "LIVE"
POINTER_LOG = "pointer-log.jsonl"
_NAME = re.compile(r"^v(\d{4,})$")
_STAGING_PREFIX = ".staging-"


class Registry:
    def __init__(self, models_dir: str | Path) -> None:
        self.root = Path(models_dir)

    # ---- reading -------------------------------------------------------------------------------------------

    def versions(self) -> list[VersionInfo]:
        """Every complete version, oldest first; unreadable ones are left out."""
        infos = []
        for path in self._version_dirs():
            try:
                infos.append(read_version_info(path))
            except ModelLoadError:
                continue
        return infos

    def version_path(self, name: str) -> Path:
        """The directory of a complete version.

        Raises:
            RegistryError: no such version, or it is incomplete.
        """
        if not _NAME.match(name or ""):
            raise RegistryError(f"{name!r} is not a version name (expected v0001, v0002, ...)")
        path = self.root / name
        try:
            read_version_info(path)
        except ModelLoadError as exc:
            raise RegistryError(f"version {name} is not available: {exc}") from exc
        return path

    def live_name(self) -> str | None:
        """The name in the LIVE pointer, or None when no version was ever made live."""
        try:
            name = (self.root / POINTER_FILE).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return name or None

    def live_path(self) -> Path:
        """The live version's directory.

        Raises:
            RegistryError: no live version, or the pointer names a missing/incomplete version.
        """
        name = self.live_name()
        if name is None:
            raise RegistryError(f"no live model in {self.root}; run `rsft init-model` first")
        return self.version_path(name)

    def pointer_history(self) -> list[dict[str, Any]]:
        """Every change of the live pointer, oldest first."""
        try:
            lines = (self.root / POINTER_LOG).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        history = []
        for line in lines:
            try:
                history.append(json.loads(line))
            except ValueError:
                continue  # a torn last line after a crash; the pointer file itself is authoritative
        return history

    def previous_live(self) -> str | None:
        """The version that was live before the current one (what `rsft rollback` puts back)."""
        live = self.live_name()
        for entry in reversed(self.pointer_history()):
            if entry.get("to") == live and entry.get("from"):
                return entry["from"]
        return None

    # ---- writing -------------------------------------------------------------------------------------------

    def publish(self, model: ResponsePolicy, parent: str | None = None, round_id: int | None = None,
                eval_numbers: dict[str, Any] | None = None, notes: str = "") -> VersionInfo:
        """Save `model` as the next immutable version. It is not made live: call `set_live` for that."""
        with self._lock():
            self._sweep_staging()
            name = self._next_name()
            staging = self.root / f"{_STAGING_PREFIX}{name}-{os.getpid()}"
            info = model.save(staging, model.describe(name, parent, round_id, eval_numbers, notes))
            _fsync_dir(staging)
            checkpoint("publish:before-rename")
            os.rename(staging, self.root / name)
            _fsync_dir(self.root)
            return info

    def set_live(self, name: str, reason: str, details: dict[str, Any] | None = None) -> str | None:
        """Point LIVE at `name` atomically; returns the previously live name. `details` (JSON) joins the pointer log's
        entry (the live guard's numbers, say).

        Raises:
            RegistryError: `name` is not a complete version.
        """
        self.version_path(name)
        with self._lock():
            self._sweep_staging()
            previous = self.live_name()
            temporary = self.root / f".{POINTER_FILE}.{os.getpid()}.tmp"
            with temporary.open("w", encoding="utf-8") as handle:
                handle.write(name + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            checkpoint("pointer:before-replace")
            os.replace(temporary, self.root / POINTER_FILE)
            _fsync_dir(self.root)
            entry = {"at": datetime.now(UTC).isoformat(timespec="milliseconds"), "from": previous, "to": name,
                     "reason": reason, **(details or {})}
            with (self.root / POINTER_LOG).open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry) + "\n")
            return previous

    # ---- internals -----------------------------------------------------------------------------------------

    def _version_dirs(self) -> list[Path]:
        if not self.root.exists():
            return []
        found = [p for p in self.root.iterdir() if p.is_dir() and _NAME.match(p.name)]
        return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))

    def _next_name(self) -> str:
        numbers = [int(_NAME.match(p.name).group(1)) for p in self._version_dirs()]
        return f"v{(max(numbers, default=0) + 1):04d}"

    def _sweep_staging(self) -> None:
        """Remove what a killed writer left: unfinished versions and unreplaced pointer files."""
        for path in self.root.glob(f"{_STAGING_PREFIX}*"):
            shutil.rmtree(path, ignore_errors=True)
        for path in self.root.glob(f".{POINTER_FILE}.*.tmp"):
            path.unlink(missing_ok=True)

    def _lock(self) -> AbstractContextManager[None]:
        return exclusive_lock(self.root / ".lock")


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
