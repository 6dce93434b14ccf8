"""The two helpers every config section uses: a field with its help text, and a check that names the key."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from ..errors import ConfigError


def setting(text: str, default: Any) -> Any:
    """A dataclass field with its help text (printed by `rsft config` and the docs)."""
    return field(default=default, metadata={"help": text})


def check(condition: bool, section: str, key: str, message: str) -> None:
    """Raise ConfigError naming `section.key` unless `condition` holds."""
    if not condition:
        raise ConfigError(f"{section}.{key}: {message}")
