"""The operator console's web layer: login, page shells under /console, and the JSON API under /api.

Thin by design: each handler parses the request, calls one library function (inbox, answer_edits, round_reports,
model_admin, exports) in a worker thread, and turns library errors into a 4xx JSON body (or a polite page).
The pages are server-rendered shells; /static/console.js fills them from the same /api the bearer token uses.

Access (enforced by `guard`, which every request passes through):
    public          the routes in `PUBLIC` (chat page, /static, /config.json, /healthz, the login form)
    everything else needs the operator: `Authorization: Bearer <operator token>`, or the console's session cookie.
                    Without it: /console pages (GET) redirect to the login form; anything else gets 401 JSON.
                    With the session cookie, a state-changing request must also carry the session's CSRF token
                    (header X-CSRF-Token, or form field csrf_token) — else 403.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
from collections.abc import Awaitable, Callable
from string import Template
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from . import answer_edits, exports, inbox, model_admin, round_reports
from .errors import InputError, NotFound, RsftError
from .parts import Parts
from .secrets import matches
from .sessions import COOKIE_NAME, CSRF_FIELD, CSRF_HEADER, LoginThrottle, Session, SessionStore, csrf_ok

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOGIN_PATH = "/console/login"
# where the guard leaves the request's session for the handlers (a typed key where aiohttp has them)
SESSION_KEY: Any = web.RequestKey("operator_session", object) if hasattr(web, "RequestKey") else "operator_session"
PUBLIC_RESOURCES = web.AppKey("public_resources", set)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

VIEWS = {  # name -> (path, title) of the console's pages, in navigation order
    "inbox": ("/console/inbox", "Inbox"),
    "answers": ("/console/answers", "Answer bank"),
    "rounds": ("/console/rounds", "Rounds"),
    "models": ("/console/models", "Models"),
    "export": ("/console/export", "Export"),
}


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
            given = header[len("Bearer "):] if header.startswith("Bearer ") else None
            authenticated = matches(given, token)
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
                given = (await request.post()).get(CSRF_FIELD)
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
                return _message_page(404, "Not found", "There is nothing at this address.")
            raise
        return web.json_response({"error": exc.reason}, status=exc.status, headers=_allow(exc))
    except RsftError as exc:
        status = 400 if isinstance(exc, InputError) else 404 if isinstance(exc, NotFound) else 409
        if wants_page:
            return _message_page(status, "That did not work", str(exc))
        return web.json_response({"error": str(exc)}, status=status)
    except Exception:  # a bug: logged with its traceback, answered politely
        log.exception("unexpected error on %s %s", request.method, request.path)
        if wants_page:
            return _message_page(500, "Something went wrong", "The error was logged; please try again.")
        return web.json_response({"error": "internal error; it was logged"}, status=500)


def add_console_routes(app: web.Application, parts: Parts, token: str, sessions: SessionStore,
                       throttle: LoginThrottle | None = None) -> None:
    """Register the login form, the console pages and the console's JSON API on `app`."""
    throttle = throttle or LoginThrottle()

    async def run(function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(function, *args)

    # ---- login -------------------------------------------------------------------------------------------

    async def login_form(request: web.Request) -> web.Response:
        target = _safe_next(request.query.get("next"))
        if sessions.get(request.cookies.get(COOKIE_NAME)) is not None:
            raise web.HTTPSeeOther(target)
        return _login_page(target)

    async def login(request: web.Request) -> web.Response:
        address = request.remote or "unknown"
        if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
            return _login_page("/console/inbox", "Send the login form, please.", status=400)
        form = await request.post()
        target = _safe_next(form.get("next") if isinstance(form.get("next"), str) else None)
        if throttle.blocked(address):
            return _login_page(target, "Too many wrong tokens; wait a few minutes and try again.", status=429)
        given = form.get("token")
        if not isinstance(given, str) or not matches(given.strip(), token):
            throttle.failed(address)
            return _login_page(target, "That is not the operator token.", status=401)
        throttle.succeeded(address)
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
            session = request.get(SESSION_KEY)
            value = request.match_info.get(arg, "") if arg else ""
            return _shell(view, title or VIEWS[view][1], session.csrf_token if session else "", value)

        return handler

    async def console_home(request: web.Request) -> web.Response:
        raise web.HTTPFound(VIEWS["inbox"][0])

    # ---- API -----------------------------------------------------------------------------------------------

    async def conversations(request: web.Request) -> web.Response:
        query = inbox.InboxQuery.from_params(dict(request.query))
        return web.json_response(await run(inbox.search, parts, query), dumps=_dumps)

    async def conversation(request: web.Request) -> web.Response:
        return web.json_response(await run(inbox.conversation, parts, request.match_info["sender_id"]),
                                 dumps=_dumps)

    async def answers(request: web.Request) -> web.Response:
        return web.json_response(await run(answer_edits.bank_overview, parts), dumps=_dumps)

    async def add_answer(request: web.Request) -> web.Response:
        revision = await run(answer_edits.add_answer, parts, await _json_body(request))
        return web.json_response(revision, status=201, dumps=_dumps)

    async def edit_answer(request: web.Request) -> web.Response:
        revision = await run(answer_edits.edit_answer, parts, request.match_info["answer_id"],
                             await _json_body(request))
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
        return web.json_response(await run(model_admin.promote_version, parts, request.match_info["name"]))

    async def rollback(request: web.Request) -> web.Response:
        body = await _json_body(request, optional=True)
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
    for view, (path, _title) in VIEWS.items():
        router.add_get(path, page(view))
    router.add_get("/console/conversations/{sender_id}", page("conversation", "Conversation", "sender_id"))
    router.add_get("/console/rounds/{round_id}", page("round", "Round", "round_id"))

    router.add_get("/api/conversations", conversations)
    router.add_get("/api/conversations/{sender_id}", conversation)
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


async def _json_body(request: web.Request, optional: bool = False) -> Any:
    text = await request.text()
    if not text.strip() and optional:
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError("the request body must be JSON") from exc


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
    return VIEWS["inbox"][0]


_HEAD = Template("""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="color-scheme" content="light">
  <meta name="referrer" content="same-origin">
  $extra
  <title>$title — rsft operator console</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/static/console.css">
</head>
""")

_LOGIN = Template("""<body class="login-body">
  <main class="login-card">
    <h1>rsft operator console</h1>
    <p class="muted">Log in with the operator token: <code>RSFT_OPERATOR_TOKEN</code>, or the token
      <code>make run</code> generated into <code>var/run/secrets/operator-token</code>.</p>
    $message
    <form method="post" action="/console/login" class="stack">
      <input type="hidden" name="next" value="$next">
      <label for="token">Operator token</label>
      <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
      <button type="submit" class="primary">Log in</button>
    </form>
  </main>
</body>
</html>
""")

_SHELL = Template("""<body data-view="$view" data-arg="$arg">
  <a class="skip-link" href="#main">Skip to content</a>
  <header class="topbar">
    <a class="brand" href="/console/inbox"><span class="brand-mark" aria-hidden="true">R</span> rsft console</a>
    <nav aria-label="Console">$nav</nav>
    <div id="round-badge" class="round-badge" role="status" aria-live="polite" hidden></div>
    <form method="post" action="/console/logout" class="logout">
      <input type="hidden" name="csrf_token" value="$csrf">
      <button type="submit" class="link-button">Log out</button>
    </form>
  </header>
  <main id="main" tabindex="-1">
    <h1 id="page-title">$title</h1>
    <div id="notice" class="notice" role="alert" hidden></div>
    <div id="view" aria-busy="true"><p class="muted">Loading…</p></div>
  </main>
  <dialog id="confirm" aria-labelledby="confirm-title">
    <form method="dialog">
      <h2 id="confirm-title">Are you sure?</h2>
      <p id="confirm-text"></p>
      <div class="dialog-buttons">
        <button value="cancel" class="secondary">Cancel</button>
        <button value="ok" id="confirm-ok" class="primary">Confirm</button>
      </div>
    </form>
  </dialog>
  <noscript><p class="notice">The console needs JavaScript.</p></noscript>
  <script src="/static/console.js" defer></script>
</body>
</html>
""")


def _login_page(target: str, message: str = "", status: int = 200) -> web.Response:
    body = _HEAD.substitute(title="Log in", extra="") + _LOGIN.substitute(
        next=html.escape(target), message=f'<p class="notice error" role="alert">{html.escape(message)}</p>'
        if message else "")
    return web.Response(text=body, status=status, content_type="text/html",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})


def _shell(view: str, title: str, csrf: str, arg: str) -> web.Response:
    current = "inbox" if view == "conversation" else "rounds" if view == "round" else view
    nav = "".join(f'<a href="{path}"{" aria-current=page" if name == current else ""}>{label}</a>'
                  for name, (path, label) in VIEWS.items())
    body = _HEAD.substitute(title=html.escape(title), extra=f'<meta name="csrf-token" content="{html.escape(csrf)}">')
    body += _SHELL.substitute(view=html.escape(view), arg=html.escape(arg), nav=nav, csrf=html.escape(csrf),
                              title=html.escape(title))
    return web.Response(text=body, content_type="text/html",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})


def _message_page(status: int, title: str, message: str) -> web.Response:
    body = _HEAD.substitute(title=html.escape(title), extra="") + (
        f'<body class="login-body"><main class="login-card"><h1>{html.escape(title)}</h1>'
        f'<p>{html.escape(message)}</p><p><a href="/console/inbox">Back to the console</a></p></main></body></html>')
    return web.Response(text=body, status=status, content_type="text/html", headers={"Cache-Control": "no-store"})

