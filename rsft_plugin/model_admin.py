"""Model versions as the console shows and changes them: lineage, the live one, promote and rollback.

Promote and rollback only move the live pointer (`Registry.set_live`, atomic, logged in pointer-log.jsonl); the
running action server sees the change and swaps the model in without a failed request. Versions themselves are
immutable, so either step can be undone by the other.
"""

from __future__ import annotations

from typing import Any

from .errors import InputError, NotFound, RegistryError
from .handoff import per_version
from .live_guard import guard_rollbacks, refuse_guard_rolled_back
from .models.registry import Registry
from .parts import Parts
from .versions import rollback


def models_overview(parts: Parts) -> dict[str, Any]:
    """Every version newest first, with parent, round, held-out accuracy, whether it is live, and its hand-offs per
    100 answered turns (a live signal: customers who wanted a person while it answered)."""
    registry = parts.registry
    live = registry.live_name()
    handoffs = per_version(parts.log)
    rolled_back = guard_rollbacks(registry)
    versions = []
    for info in reversed(registry.versions()):
        signal = handoffs.get(info.name)
        versions.append({"handoffs": signal.handoffs if signal else 0,
                         "answered_turns": signal.answered_turns if signal else 0,
                         "handoffs_per_100": signal.per_100_answers if signal else None,
                         "name": info.name, "created_at": info.created_at, "parent": info.parent,
                         "round_id": info.round_id, "heldout_accuracy": info.eval.get("heldout_accuracy"),
                         "heldout_n": info.eval.get("heldout_n"), "accepted": info.eval.get("accepted"),
                         "notes": info.notes, "n_answers": info.n_answers,
                         "remembered": info.memory.get("examples", 0),
                         "answer_bank_hash": info.answer_bank_hash[:12], "live": info.name == live,
                         "guard_rollback": (rolled_back.get(info.name) or {}).get("message")})
    history = list(reversed(registry.pointer_history()))[:20]
    previous = registry.previous_live()  # not offered when the live guard took it off
    return {"live": live, "previous": None if previous in rolled_back else previous, "versions": versions,
            "history": history}


def promote_version(parts: Parts, name: Any, force: Any = False) -> dict[str, Any]:
    """Make version `name` live (one the live guard rolled back only with `force`).

    Raises:
        InputError: not a version name, it is live already, or the guard rolled it back and `force` is not true.
        NotFound: no complete version of that name.
    """
    registry = parts.registry
    _known(registry, name)
    if registry.live_name() == name:
        raise InputError(f"{name} is live already")
    try:
        refuse_guard_rolled_back(registry, name, force is True)
    except RegistryError as exc:
        raise InputError(str(exc).replace("--force", '"force": true')) from exc
    previous = registry.set_live(name, "promoted from the console" + (" (forced over the live guard)" if force is True
                                                                       else ""))
    return {"live": name, "previous": previous}


def rollback_version(parts: Parts, name: Any = None) -> dict[str, Any]:
    """Put back the version that was live before the current one (or version `name`).

    Raises:
        InputError: nothing to roll back to, or `name` is live already.
        NotFound: no complete version of that name.
    """
    registry = parts.registry
    if name is not None:
        _known(registry, name)
        if registry.live_name() == name:
            raise InputError(f"{name} is live already")
    try:
        previous, now = rollback(registry, name)
    except RegistryError as exc:
        raise InputError(str(exc)) from exc
    return {"live": now, "previous": previous}


def _known(registry: Registry, name: Any) -> None:
    if not isinstance(name, str):
        raise InputError("a version name is text like v0002")
    try:
        registry.version_path(name)
    except RegistryError as exc:
        if "is not a version name" in str(exc):
            raise InputError(str(exc)) from exc
        raise NotFound(f"there is no version {name}") from exc
