"""The console's inbox and conversation view: which conversations to look at, and every turn of one of them.

`InboxQuery.from_params` turns query-string parameters into a validated query (clear InputError otherwise);
`search` and `conversation` read the log. User text is shown raw here: this is the live log,
behind the operator login. Exports and round reports redact it (see exports.py, round_reports.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

from .errors import InputError, NotFound
from .parts import Parts

RATINGS = ("any", "down", "up", "rated", "unrated", "to_label")  # to_label: missed, no operator label yet
SORTS = ("newest", "down_first", "lowest_score")
MAX_LIMIT = 200
MAX_TEXT = 200


@dataclass(frozen=True)
class InboxQuery:
    """Filters of the inbox; a conversation matches when one of its turns matches all of them."""

    rating: str = "any"
    score_below: float | None = None
    topic: str | None = None
    since: date | None = None
    until: date | None = None  # inclusive: the whole day
    version: str | None = None
    q: str | None = None
    sort: str = "newest"
    limit: int = 50
    offset: int = 0

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> InboxQuery:
        """Parse query-string parameters; empty values mean 'not set'.

        Raises:
            InputError: an unknown parameter or a value of the wrong kind, naming what is valid.
        """
        known = [f for f in cls.__dataclass_fields__]
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise InputError(f"unknown parameter(s) {unknown}; valid parameters are {known}")
        given = {k: v.strip() for k, v in params.items() if isinstance(v, str) and v.strip()}
        rating = given.get("rating", "any")
        if rating not in RATINGS:
            raise InputError(f"rating must be one of {list(RATINGS)}, not {rating!r}")
        sort = given.get("sort", "newest")
        if sort not in SORTS:
            raise InputError(f"sort must be one of {list(SORTS)}, not {sort!r}")
        since, until = _date(given, "since"), _date(given, "until")
        if since and until and until < since:
            raise InputError("until must not be before since")
        text = given.get("q")
        if text is not None and len(text) > MAX_TEXT:
            raise InputError(f"q (search text) is at most {MAX_TEXT} characters")
        return cls(rating=rating, score_below=_number(given, "score_below", -1.0, 1.0), topic=given.get("topic"),
                   since=since, until=until, version=given.get("version"), q=text, sort=sort,
                   limit=int(_number(given, "limit", 1, MAX_LIMIT, integer=True) or 50),
                   offset=int(_number(given, "offset", 0, 10**9, integer=True) or 0))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["since"] = self.since.isoformat() if self.since else None
        data["until"] = self.until.isoformat() if self.until else None
        return data


def search(parts: Parts, query: InboxQuery) -> dict[str, Any]:
    """One page of matching conversations, the total, and what the filters can choose from."""
    total, rows = parts.log.conversations(
        rating=query.rating, score_below=query.score_below, topic=query.topic,
        since=query.since.isoformat() if query.since else None,
        until=(query.until + timedelta(days=1)).isoformat() if query.until else None,
        version=query.version, text=query.q, sort=query.sort, limit=query.limit, offset=query.offset)
    return {"total": total, "conversations": [r.to_dict() for r in rows], "query": query.to_json(),
            "facets": parts.log.turn_facets().to_dict(), "low_score": parts.config.console.low_score}


def conversation(parts: Parts, sender_id: str) -> dict[str, Any]:
    """Every turn of one conversation with answer, model version, score, top-k, rating and its signals (a pick
    under "Was it one of these?", implicit signals, operators' labels), and its hand-offs to a person (oldest
    first; a customer may ask for a person before any answer).

    Raises:
        NotFound: neither a turn nor a hand-off was logged for this sender.
    """
    turns = parts.log.conversation(sender_id)
    handoffs = list(reversed(parts.log.handoffs(sender_id=sender_id)))
    if not turns and not handoffs:
        raise NotFound(f"there is no conversation with sender id {sender_id!r}")
    ratings = [t.rating for t in turns if t.rating is not None]
    times = sorted([t.created_at for t in turns] + [h.created_at for h in handoffs])
    signals: dict[str, list[dict[str, Any]]] = {}
    for signal in parts.log.signals(sender_id=sender_id):
        signals.setdefault(signal.turn_id, []).append(
            {"kind": signal.kind, "reply_key": signal.reply_key, "created_at": signal.created_at})
    return {"sender_id": sender_id, "turns": [{**t.to_dict(), "signals": signals.get(t.id, [])} for t in turns],
            "first_at": times[0],
            "last_at": times[-1], "up": ratings.count(1), "down": ratings.count(0),
            "versions": sorted({t.model_version for t in turns if t.model_version}),
            "handoffs": [h.to_dict() for h in handoffs]}


def _date(given: Mapping[str, str], key: str) -> date | None:
    if key not in given:
        return None
    try:
        return date.fromisoformat(given[key])
    except ValueError as exc:
        raise InputError(f"{key} must be a date like 2025-01-31, not {given[key]!r}") from exc


def _number(given: Mapping[str, str], key: str, low: float, high: float, integer: bool = False) -> float | None:
    if key not in given:
        return None
    try:
        value = int(given[key]) if integer else float(given[key])
    except ValueError as exc:
        raise InputError(f"{key} must be {'a whole number' if integer else 'a number'}, not {given[key]!r}") from exc
    if not math.isfinite(value) or not low <= value <= high:
        raise InputError(f"{key} must be between {low:g} and {high:g}")
    return value
