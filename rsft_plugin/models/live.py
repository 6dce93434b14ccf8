"""The live model inside a serving process, swapped without dropping a request.

The process loads the live version once at start. A watcher thread polls the LIVE pointer; when it names another
version, the thread loads that version completely and then swaps one reference. A request reads the reference
once and keeps the model it got, so requests in flight finish on the old version. A version that fails to load
is logged and skipped; the process keeps serving what it has.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..config import ModelConfig
from ..errors import ModelLoadError, RegistryError
from .base import ResponsePolicy
from .kinds import load_version
from .registry import Registry

log = logging.getLogger(__name__)


class LiveModel:
    def __init__(self, registry: Registry, model_config: ModelConfig,
                 loader: Callable[[Path, ModelConfig], ResponsePolicy] = load_version) -> None:
        """Load the live version now, with the class its version.json's kind names.

        Raises:
            ModelLoadError: there is no live version, or it cannot be loaded (nothing to serve).
        """
        self.registry = registry
        self.model_config = model_config
        self._loader = loader
        self._failed: str | None = None  # a version that failed to load; not retried until LIVE changes
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            path = registry.live_path()
        except RegistryError as exc:
            raise ModelLoadError(f"cannot start without a live model: {exc}") from exc
        started = time.monotonic()
        self._current = loader(path, model_config)
        log.info("serving model version %s (%s, loaded in %.1f s)", self._current.name, self._current.kind,
                 time.monotonic() - started)

    @property
    def current(self) -> ResponsePolicy:
        """The model to answer with; read it once per request."""
        return self._current

    def refresh(self) -> bool:
        """Check the pointer once; load and swap if it names another version. True when a swap happened."""
        wanted = self.registry.live_name()
        if wanted is None or wanted == self._current.name or wanted == self._failed:
            return False
        started = time.monotonic()
        try:
            model = self._loader(self.registry.version_path(wanted), self.model_config)
        except (ModelLoadError, RegistryError, OSError) as exc:
            self._failed = wanted
            log.error("keeping version %s: version %s failed to load: %s", self._current.name, wanted, exc)
            return False
        previous, self._current, self._failed = self._current.name, model, None
        log.info("swapped live model %s -> %s (%s, loaded in %.1f s)", previous, model.name, model.kind,
                 time.monotonic() - started)
        return True

    def start_watching(self, poll_seconds: float) -> None:
        """Poll the pointer in a daemon thread until `stop_watching`."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch, args=(poll_seconds,), name="rsft-live-watch",
                                        daemon=True)
        self._thread.start()

    def stop_watching(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _watch(self, poll_seconds: float) -> None:
        while not self._stop.wait(poll_seconds):
            try:
                self.refresh()
            except Exception:  # the watcher must outlive any surprise; the process keeps its model
                log.exception("live-model watcher failed; will retry")
