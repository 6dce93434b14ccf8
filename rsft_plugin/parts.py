"""The composition root: the parts a process works with, built once from the config and handed down.

Each process (a CLI command, the action server, the web server, a round, a benchmark) calls `build_parts(config)`
once and passes the `Parts` — or the one part a function needs — to the library. Nothing else opens the log or
constructs a Registry. Parts own resources (the log's connection): close them with `parts.close()` or `with`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from .config import Config
from .log import Log, open_log
from .models.registry import Registry


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Parts:
    """config: the settings; log: the plugin's log; registry: model versions and the live pointer; clock: now."""

    config: Config
    log: Log
    registry: Registry
    clock: Callable[[], datetime] = field(default=_now)

    def with_config(self, config: Config) -> Parts:
        """The same resources under other settings (a command's overrides); paths must not change."""
        if config.paths != self.config.paths:
            raise ValueError("with_config keeps the parts' resources: the paths must stay the same")
        return replace(self, config=config)

    def close(self) -> None:
        self.log.close()

    def __enter__(self) -> Parts:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def build_parts(config: Config, clock: Callable[[], datetime] = _now) -> Parts:
    """Open the log and the model registry named by `config` (once per process)."""
    return Parts(config=config, log=open_log(config), registry=Registry(config.paths.models_dir), clock=clock)
