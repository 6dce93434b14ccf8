"""`rsft worker`: run rounds by themselves — every `interval_minutes` and/or once `after_new_ratings` arrived — and
check the live version with the live guard at every poll (live_guard.py: rolls back a promotion customers like less).

One round at a time (the round lock); a failed round or guard check is recorded and logged, and the worker goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .live_guard import check_live_version
from .log import utc_now
from .maintenance import apply_retention
from .parts import Parts
from .rounds import RoundBusy, run_round

log = logging.getLogger(__name__)


def run_worker(parts: Parts, echo: Callable[[str], None] = print, stop: threading.Event | None = None,
               max_rounds: int | None = None) -> int:
    """Loop until `stop` is set (or `max_rounds` rounds ran); returns how many rounds it started."""
    stop = stop or threading.Event()
    settings = parts.config.worker
    last_time, last_stamp, started = time.monotonic(), utc_now(), 0
    echo(f"worker: a round every {settings.interval_minutes:g} min and/or after {settings.after_new_ratings} "
         f"new ratings (0 = off); checking every {settings.poll_seconds:g} s")
    while not stop.is_set() and (max_rounds is None or started < max_rounds):
        apply_retention(parts)
        _guard(parts, echo)
        reason = _due(parts, last_time, last_stamp)
        if reason:
            echo(f"worker: starting a round ({reason})")
            last_time, last_stamp = time.monotonic(), utc_now()
            started += 1
            try:
                result = run_round(parts, echo=echo, show_bar=False)
                echo(f"worker: round {result.round_id} {result.status}")
            except RoundBusy as busy:
                echo(f"worker: {busy}")
            except Exception:  # the worker outlives any single round
                log.exception("worker: the round could not run")
                echo("worker: the round could not run; see the log. Will try again at the next trigger.")
        stop.wait(settings.poll_seconds)
    return started


def _guard(parts: Parts, echo: Callable[[str], None]) -> None:
    """Run the live guard once; only a rollback is worth a line (waiting and keeping repeat every poll)."""
    try:
        decision = check_live_version(parts)
    except Exception:  # the worker outlives a failed check too
        log.exception("worker: the live guard could not run")
        return
    if decision.action == "rolled_back":
        echo(f"worker: {decision.message}")


def _due(parts: Parts, last_time: float, last_stamp: str) -> str | None:
    settings = parts.config.worker
    if settings.interval_minutes and time.monotonic() - last_time >= settings.interval_minutes * 60:
        return f"{settings.interval_minutes:g} minutes passed"
    if settings.after_new_ratings:
        fresh = parts.log.ratings_since(last_stamp)
        if fresh >= settings.after_new_ratings:
            return f"{fresh} new ratings"
    return None
