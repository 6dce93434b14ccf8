"""Model versions as the console shows and changes them: lineage, the live one, promote and rollback.

Promote and rollback only move the live pointer (`Registry.set_live`, atomic, logged in pointer-log.jsonl); the
running action server sees the change and swaps the model in without a failed request. Versions themselves are
immutable, so either step can be undone by the other.
"""

from __future__ import annotations

from typing import Any

from .errors import InputError, NotFound, RegistryError
from .handoff import per_version
from .models.registry import Registry
from .parts import Parts
from .versions import rollback


def models_overview(parts: Parts) -> dict[str, Any]:
    """Every version newest first, with parent, round, held-out accuracy, whether it is live, and its hand-offs per
    100 answered turns (a live signal: customers who wanted a person while it answered)."""
    registry = parts.registry
    live = registry.live_name()
    handoffs = per_version(parts.log)
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
                         "answer_bank_hash": info.answer_bank_hash[:12], "live": info.name == live})
    history = list(reversed(registry.pointer_history()))[:20]
    return {"live": live, "previous": registry.previous_live(), "versions": versions, "history": history}


def promote_version(parts: Parts, name: Any) -> dict[str, Any]:
    """Make version `name` live.

    Raises:
        InputError: not a version name, or it is live already.
        NotFound: no complete version of that name.
    """
    registry = parts.registry
    _known(registry, name)
    if registry.live_name() == name:
        raise InputError(f"{name} is live already")
    previous = registry.set_live(name, "promoted from the console")
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
