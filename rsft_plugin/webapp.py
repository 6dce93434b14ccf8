"""The web server: the customer chat page, the operator console (/console) and the operator API (/api).

The chat page and its static files are public; so is the console's login form. Every other route needs the
operator: `Authorization: Bearer <token>` (RSFT_OPERATOR_TOKEN, or the one generated into
var/run/secrets/operator-token), or a console session made by logging in with that token (see console.py and
sessions.py). This process never loads a model: a triggered round runs as its own `rsft retrain` process, a
published answer bank as its own process too, and status is read from the SQLite log and the status file of
`rsft serve` (its servers' restarts).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from . import jobs
from .config import Config
from .console import PUBLIC_RESOURCES, add_console_routes, errors, guard, mark_public, setup_templates
from .console_handoffs import add_handoff_routes
from .errors import JobBusy
from .launcher import servers_status
from .parts import Parts, build_parts
from .secrets import OPERATOR_TOKEN, get_secret
from .sessions import SessionStore

STATIC_DIR = Path(__file__).parent / "web" / "static"
_ROUND_FIELDS = ("id", "status", "stage", "progress", "message", "reason", "started_at", "finished_at",
                 "live_version", "new_version", "rule")


def build_app(parts: Parts, rasa_url: str, shop_name: str = "Northwind Goods",
              sessions: SessionStore | None = None) -> web.Application:
    """`/` chat page, `/static/*`, `/config.json`, `/healthz` (public); the console under `/console/`; the
    operator API under `/api/`.

    Args:
        parts: the web process's parts (one log connection for every request); the app closes them on cleanup.
        sessions: the console's session store (default: one with `console.session_minutes`); tests pass one
            with their own clock.
    """
    config = parts.config
    token = get_secret(config.paths.run_dir, OPERATOR_TOKEN)
    sessions = sessions if sessions is not None else SessionStore(config.console.session_minutes)
    app = web.Application(middlewares=[errors, guard(token, sessions)])
    app[PUBLIC_RESOURCES] = set()
    setup_templates(app)

    async def close_parts(_app: web.Application) -> None:
        parts.close()

    app.on_cleanup.append(close_parts)
    settings = {"rasa_url": rasa_url.rstrip("/"), "shop_name": shop_name}

    async def chat_page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "chat.html", headers={"Cache-Control": "no-cache"})

    async def page_config(request: web.Request) -> web.Response:
        return web.json_response(settings, headers={"Cache-Control": "no-store"})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"live_version": parts.registry.live_name(), "round": _latest_round(parts),
                                  "servers": servers_status(config)})

    async def trigger(request: web.Request) -> web.Response:
        try:
            job = jobs.start(parts.log, jobs.ROUND, queued=True)
        except JobBusy as busy:
            if busy.job is not None and busy.job.kind == jobs.PUBLISH_BANK:
                return web.json_response({"error": "the answer bank is being published; retrain when it is live"},
                                         status=409)
            return web.json_response({"error": "a round is already running", "round": _latest_round(parts)},
                                     status=409)
        pid = jobs.spawn(config, parts.log, job, "rsft_plugin.cli", ["retrain", "--job-id", str(job.id)],
                         "rounds.log")
        return web.json_response({"started": True, "pid": pid,
                                  "status_url": str(request.url.with_path("/api/status"))}, status=202)

    mark_public(app, app.router.add_get("/", chat_page))
    mark_public(app, app.router.add_get("/config.json", page_config))
    mark_public(app, app.router.add_get("/healthz", health))
    mark_public(app, app.router.add_static("/static/", STATIC_DIR))
    app.router.add_get("/api/status", status)
    app.router.add_post("/api/rounds", trigger)
    add_console_routes(app, parts, token, sessions)
    add_handoff_routes(app, parts)
    return app


def _latest_round(parts: Parts) -> dict | None:
    jobs.sweep(parts.log)
    rounds = parts.log.rounds(1)
    return {k: getattr(rounds[0], k) for k in _ROUND_FIELDS} if rounds else None


def serve(config: Config, host: str, port: int, rasa_url: str) -> None:
    """The web server process: its parts are built here, once."""
    web.run_app(build_app(build_parts(config), rasa_url), host=host, port=port, print=None, access_log=None)
