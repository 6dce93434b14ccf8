"""`rsft worker`: run rounds by themselves — every `interval_minutes` and/or once `after_new_ratings` arrived.

One round at a time (the round lock); a failed round is recorded and logged, and the worker goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .config import Config
from .maintenance import apply_retention
from .rounds import RoundBusy, run_round
from .store import Store, utc_now

log = logging.getLogger(__name__)


def run_worker(config: Config, echo: Callable[[str], None] = print, stop: threading.Event | None = None,
               max_rounds: int | None = None) -> int:
    """Loop until `stop` is set (or `max_rounds` rounds ran); returns how many rounds it started."""
    stop = stop or threading.Event()
    settings = config.worker
    last_time, last_stamp, started = time.monotonic(), utc_now(), 0
    echo(f"worker: a round every {settings.interval_minutes:g} min and/or after {settings.after_new_ratings} "
         f"new ratings (0 = off); checking every {settings.poll_seconds:g} s")
    while not stop.is_set() and (max_rounds is None or started < max_rounds):
        apply_retention(config)
        reason = _due(config, last_time, last_stamp)
        if reason:
            echo(f"worker: starting a round ({reason})")
            last_time, last_stamp = time.monotonic(), utc_now()
            started += 1
            try:
                result = run_round(config, echo=echo, show_bar=False)
                echo(f"worker: round {result.round_id} {result.status}")
            except RoundBusy as busy:
                echo(f"worker: {busy}")
            except Exception:  # the worker outlives any single round
                log.exception("worker: the round could not run")
                echo("worker: the round could not run; see the log. Will try again at the next trigger.")
        stop.wait(settings.poll_seconds)
    return started


def _due(config: Config, last_time: float, last_stamp: str) -> str | None:
    settings = config.worker
    if settings.interval_minutes and time.monotonic() - last_time >= settings.interval_minutes * 60:
        return f"{settings.interval_minutes:g} minutes passed"
    if settings.after_new_ratings:
        store = Store(config.paths.db)
        try:
            fresh = store.ratings_since(last_stamp)
        finally:
            store.close()
        if fresh >= settings.after_new_ratings:
            return f"{fresh} new ratings"
    return None
