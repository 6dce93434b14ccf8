"""The operators' hand-off queue: customers who asked for a person, to be taken and closed.

    GET  /console/handoffs[?status=open|taken|closed]   the queue, rendered on the server (web/templates/handoffs.html)
    POST /console/handoffs/{id}/take | /close           the page's buttons (a form with the session's CSRF token),
                                                        answered 303 back to the queue
    GET  /api/handoffs[?status=...]                     the same as JSON (bearer token or session)
    POST /api/handoffs/{id}/take | /close               JSON: the hand-off after the move

Access and CSRF are the console's guard's (console.py). Each handler calls one function of handoff.py; a move that
is not allowed (taking a closed hand-off) is a 409, an unknown id a 404.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from . import handoff
from .console import HANDOFFS_VIEW, render_page, shell_context
from .errors import InputError
from .log import HANDOFF_STATUSES
from .parts import Parts
from .web_input import read_form

REASON_TEXT = {handoff.ASKED: "asked for a person", handoff.REPEATED_THUMBS_DOWN: "rated answers 👎 repeatedly",
               handoff.LOW_SCORE: "not understood (low score)"}


def add_handoff_routes(app: web.Application, parts: Parts) -> None:
    """Register the queue page, its buttons and the JSON API on `app` (behind the console's guard)."""

    async def run(function: Any, *args: Any) -> Any:
        return await asyncio.to_thread(function, *args)

    async def page(request: web.Request) -> web.Response:
        status = _status(request.query.get("status"))
        listed = await run(handoff.queue, parts.log, status)
        context = await shell_context(request, parts, "handoffs", HANDOFFS_VIEW.title)
        rows = [{**h, "reason_text": REASON_TEXT.get(h["reason"], h["reason"]),
                 "conversation_url": "/console/conversations/" + quote(h["sender_id"], safe="")}
                for h in listed["handoffs"]]
        return render_page(request, "handoffs.html", {**context, "status": status, "counts": listed["counts"],
                                                      "handoffs": rows, "statuses": HANDOFF_STATUSES})

    def button(move: Any) -> Any:
        async def handler(request: web.Request) -> web.Response:
            form = await read_form(request) if request.content_type == "application/x-www-form-urlencoded" else {}
            await run(move, parts.log, request.match_info["handoff_id"])
            back = form.get("back") if form.get("back") in HANDOFF_STATUSES else None
            target = HANDOFFS_VIEW.path + (f"?{urlencode({'status': back})}" if back else "")
            raise web.HTTPSeeOther(target)

        return handler

    async def api_list(request: web.Request) -> web.Response:
        return web.json_response(await run(handoff.queue, parts.log, _status(request.query.get("status"))))

    def api_move(move: Any) -> Any:
        async def handler(request: web.Request) -> web.Response:
            moved = await run(move, parts.log, request.match_info["handoff_id"])
            return web.json_response(moved.to_dict())

        return handler

    router = app.router
    router.add_get(HANDOFFS_VIEW.path, page)
    router.add_post(HANDOFFS_VIEW.path + "/{handoff_id}/take", button(handoff.take))
    router.add_post(HANDOFFS_VIEW.path + "/{handoff_id}/close", button(handoff.close))
    router.add_get("/api/handoffs", api_list)
    router.add_post("/api/handoffs/{handoff_id}/take", api_move(handoff.take))
    router.add_post("/api/handoffs/{handoff_id}/close", api_move(handoff.close))


def _status(raw: str | None) -> str | None:
    """The queue's filter: one status, or every status when none (or "all") is given."""
    if raw in (None, "", "all"):
        return None
    if raw not in HANDOFF_STATUSES:
        raise InputError(f"status must be one of {list(HANDOFF_STATUSES)} or all, not {raw!r}")
    return raw
