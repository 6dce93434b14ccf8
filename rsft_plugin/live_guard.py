"""The live guard: after a promotion, roll back by itself when customers like the new version less than its parent.

What it compares (`check_live_version`):
  - the live version, when it went live by promotion from its parent (the last pointer change into it came from
    its `version.json` parent) — a version put back by a rollback is not judged against its own parent;
  - its evidence: its answered turns logged since it last went live (so a forced re-promotion starts afresh and
    the same evidence is never used twice);
  - the parent's evidence on comparable traffic: the parent's answered turns logged before that moment, the most
    recent `guard.parent_window` of them (the traffic just before the switch, not the parent's whole history).
  Both sides count only answered turns (not the "didn't understand" reply), each signal through the same reader.

The test: Beta(1 + up, 1 + down) posteriors of the 👍 rate on each side; roll back when
P(parent rate - new rate > guard.margin) >= guard.confidence and each side has >= guard.min_ratings pieces of
evidence. Checked at every poll of the worker (and by `rsft guard`): the posterior is valid whenever it is looked
at, so evidence accumulates and the decision comes as soon as it is clear (a Bayesian sequential test).

A rollback moves LIVE back to the parent with a reason carrying the numbers, writes the numbers into the pointer log
(`guard` in the entry) and into the stats of the round that made the version (`live_guard`), so `rsft history`,
`rsft show`, the console's models and round pages show it. The rolled-back version is then refused by `rsft
rollback` and the console's Promote unless forced (`is_guard_rolled_back`).

Signals: a reader per kind of evidence in `SIGNALS` returns weighted (up, down) counts for a version's window
(`guard.signals` names the ones counted):
  ratings   👍 up, 👎 down, weight 1;
  choices   "Was it one of these?": a pick up (the right answer was among the version's next best), "None of these"
            down, weight 1 — the served answer's 👎 is already counted by `ratings`;
  implicit  thanks/goodbye right after an answer up, re-asking or asking for a person down, each with its
            `feedback.*_weight` (a weight of 0 leaves it out).
A signal counts on a side when its turn was answered by that side's version and the signal was recorded in the
side's window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .errors import RegistryError
from .log import Log
from .models import read_version_info
from .models.registry import Registry
from .not_understood import NOT_UNDERSTOOD

if TYPE_CHECKING:
    from .config import FeedbackConfig, GuardConfig
    from .parts import Parts

GUARD_REASON = "live guard"  # the start of the reason of every pointer change the guard makes


@dataclass(frozen=True)
class Window:
    """Which turns count as one side's traffic: answered by `version`, logged in [since, until), newest `limit`."""

    version: str
    since: str | None = None
    until: str | None = None
    limit: int | None = None


@dataclass(frozen=True)
class Evidence:
    """Weighted positive and negative evidence about a version, and how many pieces it came from."""

    up: float = 0.0
    down: float = 0.0
    n: int = 0

    def __add__(self, other: Evidence) -> Evidence:
        return Evidence(self.up + other.up, self.down + other.down, self.n + other.n)

    @property
    def rate(self) -> float | None:
        return self.up / (self.up + self.down) if self.up + self.down else None


SignalReader = Callable[[Log, Window, "FeedbackConfig"], Evidence]


def read_ratings(log: Log, window: Window, feedback: FeedbackConfig) -> Evidence:
    """👍/👎 on the version's answered turns in the window (the newest `limit` rated ones)."""
    counts = log.version_rating_counts(window.version, since=window.since, until=window.until, newest=window.limit,
                                       exclude_reply_key=NOT_UNDERSTOOD)
    return Evidence(float(counts.up), float(counts.down), counts.up + counts.down)


def read_choices(log: Log, window: Window, feedback: FeedbackConfig) -> Evidence:
    """Picks (up) and "None of these" (down) after the version's answers in the window (the newest `limit`). A
    `resolved` signal is left out: the version it names missed that question, which its 👎 or "None of these"
    already counted, and the answer that settled it came later."""
    weights = {"choice": (1.0, 0.0), "none_of_these": (0.0, 1.0)}
    return _weighted(log, window, weights)


def read_implicit(log: Log, window: Window, feedback: FeedbackConfig) -> Evidence:
    """Thanks (up), re-asks and requests for a person (down), each at its feedback weight."""
    weights = {"thanks": (feedback.thanks_weight, 0.0), "reask": (0.0, feedback.reask_weight),
               "asked_human": (0.0, feedback.asked_human_weight)}
    return _weighted(log, window, {kind: w for kind, w in weights.items() if sum(w) > 0})


def _weighted(log: Log, window: Window, weights: dict[str, tuple[float, float]]) -> Evidence:
    found = [s for s in log.signals(since=window.since, until=window.until, model_version=window.version)
             if s.kind in weights]
    if window.limit is not None:
        found = found[-window.limit:]  # oldest first: the newest `limit`
    return sum((Evidence(*weights[s.kind], 1) for s in found), Evidence())


# a new signal: its reader here and its name in config
SIGNALS: dict[str, SignalReader] = {"ratings": read_ratings, "choices": read_choices, "implicit": read_implicit}


@dataclass(frozen=True)
class GuardDecision:
    """What the guard found: action is none (nothing to judge), wait (too little evidence), keep or rolled_back."""

    action: str
    message: str
    live: str | None = None
    parent: str | None = None
    live_since: str | None = None
    new_up: float = 0.0
    new_down: float = 0.0
    parent_up: float = 0.0
    parent_down: float = 0.0
    p_worse: float | None = None
    confidence: float | None = None
    margin: float | None = None
    min_ratings: int | None = None
    round_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prob_worse(new: Evidence, parent: Evidence, margin: float) -> float:
    """P(parent rate - new rate > margin) under independent Beta(1 + up, 1 + down) posteriors.

    Computed as the integral of new's density times the parent's upper tail at x + margin, on a fine grid (exact
    enough at any count the log holds, and deterministic, unlike sampling).
    """
    import numpy as np
    from scipy.stats import beta

    grid = np.linspace(0.0, 1.0, 20_001)  # (G,)
    density = beta.pdf(grid, 1 + new.up, 1 + new.down)  # (G,)
    tail = beta.sf(np.clip(grid + margin, 0.0, 1.0), 1 + parent.up, 1 + parent.down)  # (G,)
    tail[grid + margin >= 1.0] = 0.0
    return float(np.clip(np.trapezoid(density * tail, grid), 0.0, 1.0))


def gather(log: Log, window: Window, signals: tuple[str, ...], feedback: FeedbackConfig) -> Evidence:
    """Every configured signal's evidence for one side, added up."""
    total = Evidence()
    for name in signals:
        total = total + SIGNALS[name](log, window, feedback)
    return total


def check_live_version(parts: Parts) -> GuardDecision:
    """Judge the live version against its parent; roll back when it is worse (see the module's docstring).

    It holds the round lock while it judges, so a round never promotes a child of a version the guard is rolling
    back (and a running round is waited for: the guard answers `none` and looks again at the next poll). Never
    raises for a missing or unreadable version: it answers `none` with why.
    """
    from .rounds import RoundBusy, round_lock  # the round machinery loads only where the guard runs (not the web)

    if not parts.config.guard.enabled:
        return GuardDecision("none", "the live guard is off (guard.enabled: false)")
    try:
        with round_lock(parts.config.paths.run_dir):
            return _judge(parts)
    except RoundBusy:
        return GuardDecision("none", "a round is running; the live guard looks again when it has finished")


def _judge(parts: Parts) -> GuardDecision:
    settings: GuardConfig = parts.config.guard
    registry = parts.registry
    live = registry.live_name()
    went_live = _promotion_entry(registry, live)
    if live is None or went_live is None:
        return GuardDecision("none", f"{live or 'no version'} is live, not by a promotion from its parent: "
                                     "nothing to compare", live=live)
    parent, since = went_live["from"], went_live["at_log"]
    feedback = parts.config.feedback
    new = gather(parts.log, Window(live, since=since), settings.signal_names, feedback)
    old = gather(parts.log, Window(parent, until=since, limit=settings.parent_window), settings.signal_names, feedback)
    decision = dict(live=live, parent=parent, live_since=since, new_up=new.up, new_down=new.down,
                    parent_up=old.up, parent_down=old.down, confidence=settings.confidence,
                    margin=settings.margin, min_ratings=settings.min_ratings,
                    round_id=_round_of(registry, live))
    numbers = _numbers(new, old, live, parent)
    if new.n < settings.min_ratings or old.n < settings.min_ratings:
        return GuardDecision("wait", f"too little evidence to judge {live} ({numbers}; need "
                                     f"{settings.min_ratings} on each side)", **decision)
    p_worse = prob_worse(new, old, settings.margin)
    judged = (f"{numbers}; P({live} worse by > {settings.margin:.0%}) = {p_worse:.3f}, "
              f"confidence {settings.confidence:g}")
    if p_worse < settings.confidence:
        return GuardDecision("keep", f"{live} stays live: {judged}", p_worse=p_worse, **decision)
    result = GuardDecision("rolled_back", f"{GUARD_REASON}: rolled back {live} -> {parent}: {judged}",
                           p_worse=p_worse, **decision)
    _record_rollback(parts, result)
    return result


def guard_rollbacks(registry: Registry) -> dict[str, dict[str, Any]]:
    """Each version the guard rolled back (after it last went live), with the guard's numbers."""
    found: dict[str, dict[str, Any]] = {}
    for entry in registry.pointer_history():
        if entry.get("guard") and entry.get("from"):
            found[entry["from"]] = entry["guard"]
        elif entry.get("to") in found and not entry.get("guard"):
            found.pop(entry["to"])  # a forced re-promotion: later evidence decides again
    return found


def is_guard_rolled_back(registry: Registry, name: str) -> bool:
    """True when the guard rolled `name` back: the same evidence must not make it live again."""
    return name in guard_rollbacks(registry)


def refuse_guard_rolled_back(registry: Registry, name: str, force: bool) -> None:
    """Raise unless `name` may go live: it was not rolled back by the guard, or the operator forces it.

    Raises:
        RegistryError: the guard rolled `name` back and `force` is False.
    """
    numbers = guard_rollbacks(registry).get(name)
    if numbers and not force:
        raise RegistryError(f"the live guard rolled {name} back ({numbers.get('message', '')}); making it live "
                            "again needs --force (its later ratings are then judged afresh)")


def _promotion_entry(registry: Registry, live: str | None) -> dict[str, Any] | None:
    """The last pointer change into `live`, when it came from `live`'s parent; its time in the log's format."""
    if live is None:
        return None
    try:
        parent = read_version_info(registry.version_path(live)).parent
    except RegistryError:
        return None
    entries = [e for e in registry.pointer_history() if e.get("to") == live]
    if not parent or not entries or entries[-1].get("from") != parent:
        return None
    entry = dict(entries[-1])
    entry["at_log"] = _as_log_time(entry["at"])
    return entry


def _as_log_time(stamp: str) -> str:
    """Pointer-log times have seconds and +00:00; the log's have milliseconds: make them compare as times."""
    from datetime import datetime

    return datetime.fromisoformat(stamp).isoformat(timespec="milliseconds")


def _round_of(registry: Registry, name: str) -> int | None:
    try:
        return read_version_info(registry.version_path(name)).round_id
    except RegistryError:
        return None


def _numbers(new: Evidence, old: Evidence, live: str, parent: str) -> str:
    def side(name: str, evidence: Evidence) -> str:
        rate = f"{evidence.rate:.0%}" if evidence.rate is not None else "-"
        return f"{name} 👍 {evidence.up:g}/{evidence.up + evidence.down:g} ({rate})"

    return f"{side(live, new)} vs {side(parent, old)}"


def _record_rollback(parts: Parts, decision: GuardDecision) -> None:
    """Move LIVE back with the numbers in the pointer log, and note them on the round that made the version."""
    numbers = {**decision.to_dict(), "message": decision.message}
    parts.registry.set_live(decision.parent, decision.message, details={"guard": numbers})
    if decision.round_id is not None:
        record = parts.log.round(decision.round_id)
        if record is not None:
            parts.log.update_round(decision.round_id, stats={**record.stats, "live_guard": numbers})
