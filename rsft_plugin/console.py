"""The operator console's web layer: login, page shells under /console, and the JSON API under /api.

Thin by design: each handler parses the request, calls one library function (inbox, answer_edits, round_reports,
model_admin, exports) in a worker thread, and turns library errors into a 4xx JSON body (or a polite page).
The pages are server-rendered shells (Jinja2 templates in web/templates/, every value autoescaped);
/static/console.js fills them from the same /api the bearer token uses.

Access (enforced by `guard`, which every request passes through):
    public          the routes in `PUBLIC` (chat page, /static, /config.json, /healthz, the login form)
    everything else needs the operator: `Authorization: Bearer <operator token>` (the scheme in any case, as
                    RFC 7235 says), or the console's session cookie.
                    Without it: /console pages (GET) redirect to the login form; anything else gets 401 JSON.
                    With the session cookie, a state-changing request must also carry the session's CSRF token
                    (header X-CSRF-Token, or form field csrf_token) — else 403.
                    Wrong tokens, in the header or on the login form, are throttled per address (see
                    sessions.LoginThrottle): 429 after ten; the right token is never refused.

Request bodies are read by web_input's `read_json` and `read_form` only: anything that is not UTF-8 JSON (or a
form) of sane nesting is a 400 with a JSON error (on /api) or the login page, never a 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlencode

import aiohttp_jinja2
import jinja2
from aiohttp import web

from . import answer_edits, exports, handoff, inbox, labels, model_admin, round_reports
from .errors import InputError, NotFound, RsftError
from .parts import Parts
from .secrets import matches
from .sessions import COOKIE_NAME, CSRF_FIELD, CSRF_HEADER, LoginThrottle, Session, SessionStore, csrf_ok
from .web_input import bearer_token, read_form, read_json

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOGIN_PATH = "/console/login"
# where the guard leaves the request's session for the handlers (a typed key where aiohttp has them)
SESSION_KEY: Any = web.RequestKey("operator_session", object) if hasattr(web, "RequestKey") else "operator_session"
PUBLIC_RESOURCES = web.AppKey("public_resources", set)
# the wrong-token throttle, shared by the login form and the guard's bearer check (tests put their own here)
LOGIN_THROTTLE = web.AppKey("login_throttle", LoginThrottle)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TEMPLATES_DIR = Path(__file__).parent / "web" / "templates"


class View(NamedTuple):
    path: str
    title: str


VIEWS = {  # name -> (path, title) of the console's pages that console.js fills from /api
    "inbox": View("/console/inbox", "Inbox"),
    "answers": View("/console/answers", "Answer bank"),
    "rounds": View("/console/rounds", "Rounds"),
    "models": View("/console/models", "Models"),
    "export": View("/console/export", "Export"),
}
HANDOFFS_VIEW = View("/console/handoffs", "Hand-offs")  # rendered on the server (console_handoffs.py)
NAV = {"inbox": VIEWS["inbox"], "handoffs": HANDOFFS_VIEW,  # the header's links, in this order
       **{name: view for name, view in VIEWS.items() if name != "inbox"}}


def mark_public(app: web.Application, route: web.AbstractRoute | web.AbstractResource) -> None:
    """Let a route (or a whole resource) through without the operator credential: only the chat page, its
    static files and the login form are."""
    app[PUBLIC_RESOURCES].add(route.resource if isinstance(route, web.AbstractRoute) else route)


def guard(token: str, sessions: SessionStore) -> Any:
    """The middleware that refuses every non-public route to a request without the operator credential."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.route.resource in request.app[PUBLIC_RESOURCES]:
            return await handler(request)
        header = request.headers.get("Authorization")
        session: Session | None = None
        if header is not None:
            authenticated = matches(bearer_token(header), token)
            if not authenticated:
                refused = await _wrong_token(request)
                if refused is not None:
                    return web.json_response({"error": refused}, status=429)
        else:
            session = sessions.get(request.cookies.get(COOKIE_NAME))
            authenticated = session is not None
        if not authenticated:
            if request.path.startswith("/console") and request.method in SAFE_METHODS:
                target = request.path_qs if request.path.startswith("/console/") else "/console/inbox"
                raise web.HTTPFound(f"{LOGIN_PATH}?{urlencode({'next': target})}")
            return web.json_response({"error": "operator login required: log in at /console/login, or send "
                                               "Authorization: Bearer <operator token>"},
                                     status=401, headers={"WWW-Authenticate": "Bearer"})
        if session is not None and request.method not in SAFE_METHODS:
            given = request.headers.get(CSRF_HEADER)
            if given is None and request.content_type == "application/x-www-form-urlencoded":
                given = (await read_form(request)).get(CSRF_FIELD)
            if not csrf_ok(session, given if isinstance(given, str) else None):
                return web.json_response({"error": "missing or wrong CSRF token; reload the page and try again"},
                                         status=403)
        request[SESSION_KEY] = session
        return await handler(request)

    return check


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Library errors become 4xx; HTTP errors on /api become JSON; nothing becomes a bare 500."""
    wants_page = not request.path.startswith("/api/")
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if wants_page:
            if exc.status == 404 and request.path.startswith("/console"):
                return _message_page(request, 404, "Not found", "There is nothing at this address.")
            raise
        return web.json_response({"error": exc.reason}, status=exc.status, headers=_allow(exc))
    except RsftError as exc:
        status = 400 if isinstance(exc, InputError) else 404 if isinstance(exc, NotFound) else 409
        if wants_page:
            return _message_page(request, status, "That did not work", str(exc))
        return web.json_response({"error": str(exc)}, status=status)
    except Exception:  # a bug: logged with its traceback, answered politely
        log.exception("unexpected error on %s %s", request.method, request.path)
        if wants_page:
            return _message_page(request, 500, "Something went wrong", "The error was logged; please try again.")
        return web.json_response({"error": "internal error; it was logged"}, status=500)


def add_console_routes(app: web.Application, parts: Parts, token: str, sessions: SessionStore,
                       throttle: LoginThrottle | None = None) -> None:
    """Register the login form, the console pages and the console's JSON API on `app`."""
    app[LOGIN_THROTTLE] = throttle or LoginThrottle()

    async def run(function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(function, *args)

    # ---- login -------------------------------------------------------------------------------------------

    async def login_form(request: web.Request) -> web.Response:
        target = _safe_next(request.query.get("next"))
        if sessions.get(request.cookies.get(COOKIE_NAME)) is not None:
            raise web.HTTPSeeOther(target)
        return _login_page(request, target)

    async def login(request: web.Request) -> web.Response:
        if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
            return _login_page(request, "/console/inbox", "Send the login form, please.", status=400)
        try:
            form = await read_form(request)
        except InputError as exc:
            return _login_page(request, "/console/inbox", str(exc), status=400)
        target = _safe_next(form.get("next") if isinstance(form.get("next"), str) else None)
        given = form.get("token")
        if not isinstance(given, str) or not matches(given.strip(), token):  # the right token is never throttled
            refused = await _wrong_token(request)
            return _login_page(request, target, refused or "That is not the operator token.",
                               status=401 if refused is None else 429)
        sessions.end(request.cookies.get(COOKIE_NAME))
        cookie, _ = sessions.create()
        response = web.Response(status=303, headers={"Location": target, "Cache-Control": "no-store"})
        response.set_cookie(COOKIE_NAME, cookie, max_age=sessions.max_age_seconds, path="/", httponly=True,
                            samesite="Strict", secure=request.secure)
        return response

    async def logout(request: web.Request) -> web.Response:
        sessions.end(request.cookies.get(COOKIE_NAME))
        response = web.Response(status=303, headers={"Location": LOGIN_PATH, "Cache-Control": "no-store"})
        response.del_cookie(COOKIE_NAME, path="/")
        return response

    # ---- pages ---------------------------------------------------------------------------------------------

    def page(view: str, title: str | None = None, arg: str = "") -> Handler:
        async def handler(request: web.Request) -> web.Response:
            value = request.match_info.get(arg, "") if arg else ""
            context = await shell_context(request, parts, view, title or VIEWS[view].title, value)
            return render_page(request, "shell.html", context)

        return handler

    async def console_home(request: web.Request) -> web.Response:
        raise web.HTTPFound(VIEWS["inbox"].path)

    # ---- API -----------------------------------------------------------------------------------------------

    async def conversations(request: web.Request) -> web.Response:
        query = inbox.InboxQuery.from_params(dict(request.query))
        return web.json_response(await run(inbox.search, parts, query), dumps=_dumps)

    async def conversation(request: web.Request) -> web.Response:
        return web.json_response(await run(inbox.conversation, parts, request.match_info["sender_id"]),
                                 dumps=_dumps)

    async def label(request: web.Request) -> web.Response:
        signal = await run(labels.label_turn, parts, request.match_info["turn_id"], await read_json(request))
        return web.json_response(signal, status=201, dumps=_dumps)

    async def answers(request: web.Request) -> web.Response:
        return web.json_response(await run(answer_edits.bank_overview, parts), dumps=_dumps)

    async def add_answer(request: web.Request) -> web.Response:
        revision = await run(answer_edits.add_answer, parts, await read_json(request))
        return web.json_response(revision, status=201, dumps=_dumps)

    async def edit_answer(request: web.Request) -> web.Response:
        revision = await run(answer_edits.edit_answer, parts, request.match_info["answer_id"],
                             await read_json(request))
        return web.json_response(revision, dumps=_dumps)

    async def answer_history(request: web.Request) -> web.Response:
        return web.json_response(await run(answer_edits.answer_history, parts, request.match_info["answer_id"]),
                                 dumps=_dumps)

    async def publications(request: web.Request) -> web.Response:
        return web.json_response({"publications": await run(answer_edits.publications, parts)}, dumps=_dumps)

    async def publish(request: web.Request) -> web.Response:
        return web.json_response(await run(answer_edits.start_publication, parts), status=202, dumps=_dumps)

    async def rounds(request: web.Request) -> web.Response:
        return web.json_response({"rounds": await run(round_reports.rounds_overview, parts)}, dumps=_dumps)

    async def round_detail(request: web.Request) -> web.Response:
        round_id = _round_id(request)
        return web.json_response(await run(round_reports.round_detail, parts, round_id), dumps=_dumps)

    async def round_plot(request: web.Request) -> web.FileResponse:
        path = await run(round_reports.plot_path, parts, _round_id(request), request.match_info["name"])
        return web.FileResponse(path, headers={"Cache-Control": "private, no-cache"})

    async def models(request: web.Request) -> web.Response:
        return web.json_response(await run(model_admin.models_overview, parts), dumps=_dumps)

    async def promote(request: web.Request) -> web.Response:
        body = await read_json(request, optional=True)
        if not isinstance(body, dict) or set(body) - {"force"}:
            raise InputError('expected {} or {"force": true} (over the live guard)')
        return web.json_response(await run(model_admin.promote_version, parts, request.match_info["name"],
                                           body.get("force", False)))

    async def rollback(request: web.Request) -> web.Response:
        body = await read_json(request, optional=True)
        if not isinstance(body, dict) or set(body) - {"version"}:
            raise InputError('expected {} or {"version": "v0002"}')
        return web.json_response(await run(model_admin.rollback_version, parts, body.get("version")))

    async def export(request: web.Request) -> web.StreamResponse:
        dataset, fmt = request.match_info["dataset"], request.match_info["fmt"]
        chunks = await run(exports.export_lines, parts.log, dataset, fmt)  # NotFound before any byte
        response = web.StreamResponse(headers={
            "Content-Type": exports.FORMATS[fmt], "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="rsft-{dataset}.{fmt}"'})
        done = object()
        try:
            await response.prepare(request)
            while (chunk := await run(next, chunks, done)) is not done:
                await response.write(chunk.encode("utf-8"))
        finally:
            chunks.close()  # a client that went away mid-download: the generator stops reading the log now
        await response.write_eof()
        return response

    router = app.router
    mark_public(app, router.add_get(LOGIN_PATH, login_form))
    mark_public(app, router.add_post(LOGIN_PATH, login))
    router.add_post("/console/logout", logout)
    router.add_get("/console", console_home)
    router.add_get("/console/", console_home)
    for name, view in VIEWS.items():
        router.add_get(view.path, page(name))
    router.add_get("/console/conversations/{sender_id}", page("conversation", "Conversation", "sender_id"))
    router.add_get("/console/rounds/{round_id}", page("round", "Round", "round_id"))

    router.add_get("/api/conversations", conversations)
    router.add_get("/api/conversations/{sender_id}", conversation)
    router.add_post("/api/turns/{turn_id}/label", label)
    router.add_get("/api/answers", answers)
    router.add_post("/api/answers", add_answer)
    router.add_put("/api/answers/{answer_id}", edit_answer)
    router.add_get("/api/answers/{answer_id}/revisions", answer_history)
    router.add_get("/api/publications", publications)
    router.add_post("/api/publications", publish)
    router.add_get("/api/rounds", rounds)
    router.add_get("/api/rounds/{round_id}", round_detail)
    router.add_get("/api/rounds/{round_id}/plots/{name}", round_plot)
    router.add_get("/api/models", models)
    router.add_post("/api/models/rollback", rollback)
    router.add_post("/api/models/{name}/promote", promote)
    router.add_get("/api/export/{dataset}.{fmt}", export)


# ---- helpers ---------------------------------------------------------------------------------------------------


def _round_id(request: web.Request) -> int:
    raw = request.match_info["round_id"]
    if not raw.isdigit() or len(raw) > 9:
        raise NotFound(f"there is no round {raw!r}")
    return int(raw)


async def _wrong_token(request: web.Request) -> str | None:
    """Count a wrong operator token from this request's address. Returns None when it is to be answered 401 at
    once, else (after the throttle's delay) the message of its 429."""
    throttle = request.app[LOGIN_THROTTLE]
    wait = throttle.failed(request.remote or "unknown")
    if wait is None:
        return None
    if wait <= throttle.delay:  # once per burst, not once per guess
        log.warning("wrong operator tokens from %s: throttled (429 after a delay)", request.remote)
    await asyncio.sleep(wait)
    return "Too many wrong tokens from your address; wrong tokens are refused for a few minutes (the right one works)."


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


def _allow(exc: web.HTTPException) -> dict[str, str]:
    allowed = exc.headers.get("Allow")
    return {"Allow": allowed} if allowed else {}


def _safe_next(target: str | None) -> str:
    """Only a console path may follow the login (never another site: no open redirect)."""
    if target and target.startswith("/console/") and not target.startswith("//") and "\\" not in target \
            and not target.startswith(LOGIN_PATH) and all(32 < ord(c) < 127 for c in target):
        return target
    return VIEWS["inbox"].path


def setup_templates(app: web.Application) -> None:
    """Jinja2 (autoescaping every value) for the console's server-rendered pages, from web/templates/."""
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True, trim_blocks=True,
                         lstrip_blocks=True, keep_trailing_newline=True)


def render_page(request: web.Request, name: str, context: dict[str, Any], status: int = 200,
                frame_deny: bool = True) -> web.Response:
    """A console template, never cached, never framed (except error pages)."""
    response = aiohttp_jinja2.render_template(name, request, context, status=status)
    response.headers["Cache-Control"] = "no-store"
    if frame_deny:
        response.headers["X-Frame-Options"] = "DENY"
    return response


def _login_page(request: web.Request, target: str, message: str = "", status: int = 200) -> web.Response:
    return render_page(request, "login.html", {"title": "Log in", "next": target, "message": message}, status)


async def shell_context(request: web.Request, parts: Parts, view: str, title: str, arg: str = "") -> dict[str, Any]:
    """What every console page's frame shows: the navigation (with the open hand-offs), the CSRF token."""
    session = request.get(SESSION_KEY)
    current = "inbox" if view == "conversation" else "rounds" if view == "round" else view
    open_handoffs = await asyncio.to_thread(handoff.open_count, parts.log)
    return {"view": view, "arg": arg, "csrf": session.csrf_token if session else "", "title": title, "views": NAV,
            "current": current, "open_handoffs": open_handoffs}


def _message_page(request: web.Request, status: int, title: str, message: str) -> web.Response:
    return render_page(request, "message.html", {"title": title, "message": message}, status, frame_deny=False)
