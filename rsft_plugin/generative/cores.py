"""How many threads a reply should run on: every core when the machine's other processes left them idle lately,
the configured few when not (Linux /proc/stat; elsewhere always the few).

A written reply's 4-bit products split over the kernel's threads. On a quiet 2-core machine two threads make a
decode step ~1.3x faster than one (20 -> 16 ms); on one whose other core is busy (a round, a test run, another
service) two are ~1.4x SLOWER than one, because every step waits for the thread that lost its core. So the writer
looks before each reply: the time the machine's cores were busy since its previous look, less this process's own
CPU time (its own replies), is what the other processes used, and a reply takes only the cores they left idle.

`writer_threads` sets the counts around a writer's work. torch's count is process-wide; the 4-bit kernel's is the
calling thread's. With `threads: 0` (every core; a round's `round_threads: 0` on a machine of its own) fine-tuning
runs torch on every core, and decoding runs the 4-bit products (most of a step) on every core of the kernel's and
torch's own operations on one: both on two threads spin against each other. Sampling 4 replies to 12 bitext
questions on this 2-core AVX2 machine: torch 1 + kernel 2 81 new tokens/s, torch 2 + kernel 1 72, both on one 65,
both on two 42 (docs/benchmarks.md).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuTimes", "CoreWatch", "others_busy", "read_cpu_times", "reply_threads", "threads_for_reply",
           "writer_threads"]

SHORTEST_LOOK = 0.2  # seconds: a shorter span says little at /proc/stat's 10 ms ticks; the previous answer stands
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_STAT = Path("/proc/stat")


@dataclass(frozen=True)
class CpuTimes:
    """One look at the machine: when (time.monotonic()), the CPU seconds all cores have been busy since boot, and
    the CPU seconds of this process (all its threads)."""

    at: float
    busy: float
    own: float


def read_cpu_times(stat: Path = _STAT) -> CpuTimes | None:
    """Now's `CpuTimes`, or None where /proc/stat cannot be read (not Linux)."""
    try:
        with stat.open(encoding="ascii") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    if len(fields) < 6 or fields[0] != "cpu":  # "cpu" user nice system idle iowait ...
        return None
    ticks = [int(value) for value in fields[1:9]]  # user nice system idle iowait irq softirq steal (guest is in user)
    idle = ticks[3] + ticks[4]
    return CpuTimes(time.monotonic(), (sum(ticks) - idle) / _TICKS, time.process_time())


def others_busy(earlier: CpuTimes, later: CpuTimes) -> float | None:
    """Cores the other processes kept busy between two looks, on average; None when they are too close together."""
    span = later.at - earlier.at
    if span < SHORTEST_LOOK:
        return None
    return max(0.0, ((later.busy - earlier.busy) - (later.own - earlier.own)) / span)


def reply_threads(fewest: int, cores: int, busy: float) -> int:
    """The cores the others left idle (rounded: a core half busy counts as busy), never fewer than `fewest`."""
    return max(fewest, min(cores, round(cores - busy - 0.01)))


class CoreWatch:
    """Looks at the machine before each reply and says how many threads it may run on."""

    def __init__(self, read=read_cpu_times, cores: int | None = None) -> None:
        self._read = read
        self._cores = cores or _usable_cores()
        self._lock = threading.Lock()
        self._last = read()
        self._busy: float | None = None  # the others' load at the last look that spanned long enough

    def threads(self, fewest: int) -> int:
        """Threads for the next reply: all cores if the others left them idle since the previous look (or since
        the watch began), else `fewest`; `fewest` where the machine cannot be read."""
        now = self._read()
        with self._lock:
            if now is not None and self._last is not None:
                busy = others_busy(self._last, now)
                if busy is not None:
                    self._busy, self._last = busy, now
            elif now is not None:
                self._last = now
            return fewest if self._busy is None else reply_threads(fewest, self._cores, self._busy)


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


_WATCH: CoreWatch | None = None
_WATCH_LOCK = threading.Lock()


def threads_for_reply(fewest: int) -> int:
    """The process's `CoreWatch.threads` (one watch per process: the machine is the same for every writer)."""
    global _WATCH
    with _WATCH_LOCK:
        if _WATCH is None:
            _WATCH = CoreWatch()
        watch = _WATCH
    return watch.threads(fewest)


_TORCH_LOCK = threading.Lock()
_TORCH_STATE = {"inside": 0, "before": 0}  # writers inside writer_threads(), torch's count before the first


@contextmanager
def writer_threads(threads: int, use_idle_cores: bool = False, training: bool = False) -> Iterator[None]:
    """Run a writer's torch work on `threads` threads and its 4-bit products on as many of the kernel's (0: every
    core, as the module says; `training` leaves the kernel alone: training does not use it), and restore the
    process's torch count after.

    torch's thread count is process-wide and the action server writes replies in several threads at once (no
    lock: under load each reply runs into its time limit and serves its grounding answer, instead of queueing
    past Rasa's action timeout), so the first writer in sets the count and the last one out restores it. With
    `use_idle_cores`, a writer alone in the process runs its 4-bit products on every core the machine's other
    processes left idle since the previous reply (`threads_for_reply`).
    """
    import torch

    from .quantised import kernel_threads

    if not threads and training:  # torch's own count: every core unless the process set it
        yield
        return
    torch_threads, kernel = (threads, threads) if threads else (1, _usable_cores())
    with _TORCH_LOCK:
        alone = not _TORCH_STATE["inside"]
        if alone:
            _TORCH_STATE["before"] = torch.get_num_threads()
            torch.set_num_threads(torch_threads)
        _TORCH_STATE["inside"] += 1
    if alone and threads and use_idle_cores and not training:
        kernel = threads_for_reply(threads)
    try:
        with kernel_threads(kernel):
            yield
    finally:
        with _TORCH_LOCK:
            _TORCH_STATE["inside"] -= 1
            if not _TORCH_STATE["inside"]:
                torch.set_num_threads(_TORCH_STATE["before"])
