"""`rsft serve --scale`: the assistant as several processes behind a load balancer (issue 13).

Processes, all under the same supervisord as `Stack`'s three (restarted when they die, within the restart budget):
    postgres      the plugin's log and Rasa's tracker store: log.url and scale.tracker_url when set, else a private
                  server (pgserver.py) in paths.postgres_dir, with the databases rsft and rasa_tracker; Rasa's
                  tracker store (rasa/tracker_store.py) and the log reconnect after it restarted
    redis         Rasa's lock store (rasa/lock_store.py: Rasa's RedisLockStore with atomic ticket updates): one
                  conversation's messages are processed one at a time and in order across all Rasa processes
                  (scale.redis_url, else a redis-server on scale.redis_port that requires a generated password)
    rasa-1..N     `rasa run` on scale.rasa_ports_from + i, the same Rasa model, the endpoints written here
    actions-1..M  the action server on scale.action_ports_from + i; each loads the live model once and swaps when
                  the LIVE pointer in the shared paths.models_dir changes
    lb            HAProxy: server.rasa_port -> rasa-*, server.action_port -> actions-* (every Rasa calls its
                  actions through it), the ports one process of each has without --scale
    web           the chat page and console, sending messages to the load balancer

Why HAProxy rather than nginx (both Debian packages): open-source nginx has only passive health checks (a backend
is marked down after customers' requests to it failed); HAProxy checks every backend every second
(`option httpchk`) and takes a dead one out after two failed checks, and `option redispatch` with `retries` sends
a request whose connection was refused to another backend, so a killed process costs only the requests it was
holding. The generated files (haproxy.cfg, endpoints.yml, and redis.conf, mode 0600, as it holds Redis's password)
are written to the stack's log folder. Passwords reach the processes through supervisord's environment only.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import yaml

from .config import LOG_URL_ENV
from .config.service import redact_url
from .launcher import _RASA_QUIET, Stack, _repo_root, ensure_rasa_model
from .pgserver import PostgresServer, PostgresUnavailable
from .rasa import rasa_pythonpath
from .secrets import POSTGRES_PASSWORD, REDIS_PASSWORD, get_secret
from .supervision import LaunchError, Program, Supervisor

__all__ = ["HAPROXY_BIN", "REDIS_BIN", "ScaledStack", "haproxy_configuration", "redis_configuration",
           "scaled_endpoints"]

HAPROXY_BIN = "/usr/sbin/haproxy"
REDIS_BIN = "/usr/bin/redis-server"
TRACKER_PASSWORD_ENV = "RSFT_TRACKER_PASSWORD"
LOCK_STORE_PASSWORD_ENV = "RSFT_LOCK_STORE_PASSWORD"  # Redis's password, as Rasa reads it in endpoints.yml
LOCK_KEY_PREFIX = "rsft"  # RedisLockStore wants it alphanumeric
LOCK_STORE_CLASS = "rsft_plugin.rasa.lock_store.SerialRedisLockStore"  # Rasa's RedisLockStore, made atomic
TRACKER_STORE_CLASS = "rsft_plugin.rasa.tracker_store.ReconnectingSQLTrackerStore"  # Rasa's SQL one, reconnecting


@dataclass
class ScaledStack(Stack):
    """PostgreSQL, Redis, N Rasa and M action servers, HAProxy and the chat page (`rsft serve --scale`)."""

    postgres: PostgresServer | None = None
    log_url: str = ""

    @property
    def rasa_names(self) -> list[str]:
        return [f"rasa-{i + 1}" for i in range(self.config.scale.rasa_servers)]

    @property
    def action_names(self) -> list[str]:
        return [f"actions-{i + 1}" for i in range(self.config.scale.action_servers)]

    def backend_url(self, name: str) -> str:
        """The direct URL of one backend (rasa-2, actions-1), bypassing the load balancer."""
        kind, _, number = name.rpartition("-")
        return f"http://{self.host}:{self.config.scale.ports()[kind][int(number) - 1]}"

    def start(self) -> None:
        """Start the databases, the backends (in parallel), the load balancer and the chat page. Stops all on
        failure."""
        try:
            _check_installed()
            self._check_ports()
            model = ensure_rasa_model(self.config, self.log_dir, self.announce)
            self.log_url, tracker_url = self._databases()
            programs = self._scaled_programs(model, tracker_url)
            server = self.config.server
            self.supervisor = Supervisor(
                programs, self.log_dir, self.scaled_secrets(tracker_url), announce=self.announce,
                restart_budget=server.restart_budget, restart_window_seconds=server.restart_window_seconds,
                start_timeout_seconds=server.start_timeout_seconds)
            self.announce(f"rsft: starting supervisord (logs and status in {self.log_dir})")
            self.supervisor.start_daemon()
            if self.postgres is not None:
                self._start_postgres()
            if not self.config.scale.redis_url:
                self._start_together(["redis"])
                _wait_for_redis(self.host, self.config.scale.redis_port, self._redis_password(), 30)
            # rasa-1 alone first: each Rasa creates the tracker tables when they are missing, and two doing it at
            # once in an empty database can collide; the action servers load their model meanwhile.
            self._start_together([*self.action_names, self.rasa_names[0]])
            self._start_together(self.rasa_names[1:])
            self._start_together(["lb", "web"])
            self.supervisor.watch()
        except BaseException:
            self.stop()
            raise

    @property
    def redis_url(self) -> str:
        """The lock store's Redis: scale.redis_url, or the private redis-server with its password."""
        scale = self.config.scale
        return scale.redis_url or f"redis://:{quote(self._redis_password(), safe='')}@{self.host}:{scale.redis_port}/1"

    def scaled_secrets(self, tracker_url: str) -> dict[str, str]:
        """The environment variables every process gets that no file or command line shows: the tokens, the log's
        URL, and the passwords Rasa substitutes in endpoints.yml (the tracker store's and Redis's)."""
        return {**self._secrets(), LOG_URL_ENV: self.log_url,
                TRACKER_PASSWORD_ENV: unquote(urlsplit(tracker_url).password or ""),
                LOCK_STORE_PASSWORD_ENV: unquote(urlsplit(self.redis_url).password or "")}

    def stop(self) -> None:
        super().stop()  # supervisord stops PostgreSQL and Redis last (their priority)
        self.postgres = None

    # ---- internals -----------------------------------------------------------------------------------------

    def _check_ports(self) -> None:
        server = self.config.server
        taken = [server.rasa_port, server.action_port, server.web_port,
                 *(port for ports in self.config.scale.ports().values() for port in ports)]
        if self.config.log.url:
            taken.remove(self.config.scale.postgres_port)  # no private server then
        clashes = sorted({port for port in taken if taken.count(port) > 1})
        if clashes:
            raise LaunchError(f"port(s) {clashes} are given to two servers: check server.*_port and the scale "
                              "section (rasa_ports_from/action_ports_from + the server counts, redis_port, "
                              "postgres_port)")

    def _start_together(self, names: list[str]) -> None:
        """Start `names` at once and wait for all (each Rasa takes 30-60 s to load, so never one after another)."""
        if not names:
            return
        self.announce(f"rsft: starting {', '.join(names)} ...")
        failures: list[BaseException] = []
        took: dict[str, float] = {}

        def start(name: str) -> None:
            try:
                took[name] = self._supervised.start(name)
            except BaseException as exc:  # reported below, from the launcher's thread
                failures.append(exc)

        threads = [threading.Thread(target=start, args=(name,), daemon=True) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        self.announce("rsft: up: " + ", ".join(f"{name} ({seconds:.0f} s)" for name, seconds in took.items()))

    def _databases(self) -> tuple[str, str]:
        """(the log's URL, Rasa's tracker store URL), starting the private PostgreSQL when log.url is empty."""
        scale = self.config.scale
        if self.config.log.url:
            return self.config.log.url, scale.tracker_url or self.config.log.url
        directory = self.config.paths.postgres_dir
        try:
            self.postgres = PostgresServer.supervised(directory, scale.postgres_port,
                                                      get_secret(self.config.paths.run_dir, POSTGRES_PASSWORD))
        except PostgresUnavailable as exc:
            raise LaunchError(f"PostgreSQL would not start: {exc}{_permission_hint(exc, directory)}") from exc
        return self.postgres.url("rsft"), scale.tracker_url or self.postgres.url("rasa_tracker")

    def _start_postgres(self) -> None:
        """Start the private PostgreSQL under supervisord, wait until it accepts connections, create the databases
        (the first time)."""
        postgres = self.postgres
        self.announce(f"rsft: starting PostgreSQL on port {postgres.port} (data in {postgres.directory})")
        try:
            self._start_together(["postgres"])
            postgres.wait_until_ready(60)
        except (LaunchError, PostgresUnavailable) as exc:
            raise LaunchError(f"PostgreSQL would not start: {exc}; see {self._supervised.log_path('postgres')}"
                              f"{_permission_hint(exc, postgres.directory)}") from exc
        for name in ("rsft", *(() if self.config.scale.tracker_url else ("rasa_tracker",))):
            _database(postgres, name)

    def _redis_password(self) -> str:
        return get_secret(self.config.paths.run_dir, REDIS_PASSWORD)

    def _redis_configuration(self) -> Path:
        """redis.conf for the private redis-server, mode 0600: its password must not show in `ps`."""
        path = self.log_dir / "redis.conf"
        path.unlink(missing_ok=True)  # recreated, so the mode is ours whatever an old file had
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(redis_configuration(self.host, self.config.scale.redis_port, self._redis_password()))
        return path

    def _scaled_programs(self, model: Path, tracker_url: str) -> list[Program]:
        server, paths, scale = self.config.server, self.config.paths, self.config.scale
        config_env = {"RSFT_CONFIG": str(self.config.source)} if self.config.source else {}
        config_flag = ["--config", str(self.config.source)] if self.config.source else []
        ports = scale.ports()
        endpoints = self.log_dir / "endpoints.yml"
        endpoints.write_text(scaled_endpoints(paths.bot_dir / "endpoints.yml", f"{self.action_url}/webhook",
                                              tracker_url, self.redis_url), encoding="utf-8")
        haproxy = self.log_dir / "haproxy.cfg"
        haproxy.write_text(haproxy_configuration(self.host, server.rasa_port, server.action_port,
                                                 ports["rasa"], ports["actions"]), encoding="utf-8")
        rasa_python = paths.rasa_bin.with_name("python")
        origins = sorted({f"http://{h}:{server.web_port}" for h in (self.host, "localhost", "127.0.0.1")})
        rasa_env = {"PYTHONPATH": rasa_pythonpath(), "VIRTUAL_ENV": "", **_RASA_QUIET}
        programs = []
        if self.postgres is not None:  # fast shutdown on SIGINT, after the servers using it (a low priority)
            programs.append(Program("postgres", self.postgres.command, _repo_root(), stop_signal="INT", priority=1))
        if not scale.redis_url:
            programs.append(Program("redis", [REDIS_BIN, str(self._redis_configuration())], self.log_dir,
                                    priority=2))
        for name, port in zip(self.action_names, ports["actions"], strict=True):
            programs.append(Program(name, [sys.executable, "-m", "rsft_plugin.rasa", "--host", self.host, "--port",
                                           str(port)], _repo_root(), config_env, f"http://{self.host}:{port}/health"))
        for name, port in zip(self.rasa_names, ports["rasa"], strict=True):
            programs.append(Program(name, [str(rasa_python), "-m", "rsft_plugin.rasa.rasa_run", "run", "--enable-api",
                                           "--cors", *origins, "--interface", self.host, "--port", str(port),
                                           "--model", str(model), "--endpoints", str(endpoints),
                                           "--credentials", str(paths.bot_dir / "credentials.yml")],
                                    paths.bot_dir, rasa_env, f"http://{self.host}:{port}/webhooks/rest/"))
        programs.append(Program("lb", [HAPROXY_BIN, "-db", "-f", str(haproxy)], self.log_dir, {},
                                f"{self.rasa_url}/"))
        programs.append(Program("web", [sys.executable, "-m", "rsft_plugin.cli", *config_flag, "web", "--host",
                                        self.host, "--port", str(server.web_port), "--rasa-url", self.rasa_url],
                                _repo_root(), {}, f"{self.web_url}/healthz"))
        return programs

    def describe_log(self) -> str:
        return redact_url(self.log_url) if self.log_url else "(not started)"


def scaled_endpoints(bot_endpoints: Path, action_url: str, tracker_url: str, redis_url: str) -> str:
    """The bot's endpoints.yml with the action server behind the load balancer, the tracker store on PostgreSQL
    and the Redis lock store; other sections of the bot's file are kept. Passwords (of the tracker store's and of
    Redis's URL) stay `${VAR}` references that Rasa fills from its environment (unquoted, or Rasa would not
    substitute them)."""
    tracker, redis = urlsplit(tracker_url), urlsplit(redis_url)
    kept = {}
    if bot_endpoints.exists():
        kept = {key: value for key, value in (yaml.safe_load(bot_endpoints.read_text(encoding="utf-8")) or {}).items()
                if key not in ("action_endpoint", "tracker_store", "lock_store")}
    lines = ["# Written by `rsft serve --scale` (rsft_plugin/scaled.py) for every Rasa process; do not edit.",
             "action_endpoint:", f"  url: {action_url}", "  headers:", "    X-Rsft-Action-Token: ${RSFT_ACTION_TOKEN}",
             "tracker_store:", f"  type: {TRACKER_STORE_CLASS}", "  dialect: postgresql",
             f"  url: {tracker.hostname or '127.0.0.1'}", f"  port: {tracker.port or 5432}",
             f"  db: {unquote(tracker.path.lstrip('/')) or 'postgres'}"]
    if tracker.username:
        lines.append(f"  username: {unquote(tracker.username)}")
    if tracker.password:
        lines.append(f"  password: ${{{TRACKER_PASSWORD_ENV}}}")
    lines += ["lock_store:", f"  type: {LOCK_STORE_CLASS}", f"  url: {redis.hostname or '127.0.0.1'}",
              f"  port: {redis.port or 6379}", f"  db: {redis.path.lstrip('/') or '1'}",
              f"  key_prefix: {LOCK_KEY_PREFIX}"]
    if redis.username:
        lines.append(f"  username: {unquote(redis.username)}")
    if redis.password:
        lines.append(f"  password: ${{{LOCK_STORE_PASSWORD_ENV}}}")
    text = "\n".join(lines) + "\n"
    return text + (yaml.safe_dump(kept, sort_keys=False) if kept else "")


def redis_configuration(host: str, port: int, password: str) -> str:
    """redis-server's configuration: locks only (no persistence), on `host`:`port`, every client must AUTH."""
    quoted = password.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return "\n".join(["# Written by `rsft serve --scale` (rsft_plugin/scaled.py); do not edit. Mode 0600.",
                      f"port {port}", f"bind {host}", 'save ""', "appendonly no", "daemonize no",
                      f'requirepass "{quoted}"', ""])


def haproxy_configuration(host: str, rasa_port: int, action_port: int, rasa_ports: list[int],
                          action_ports: list[int]) -> str:
    """HAProxy in front of the Rasa servers and of the action servers, with active health checks.

    A backend is checked every second and taken out after 3 failed checks in a row (then every 0.5 s; back in
    after 2 good ones); a refused connection is retried on another backend (`redispatch`). A dead process
    refuses the check's connection at once, so it is out within about 2 s; a check waits up to 10 s for an
    answer, because a busy Rasa answers it late (with 2 s, all backends of an overloaded stack were taken out
    together and every request got a 503: bench/scaled.py, 100 customers on 2 cores). Each request is logged
    (HAProxy's httplog) to lb.log.
    """
    def backend(name: str, check: str, ports: list[int]) -> list[str]:
        return [f"backend {name}", "    balance roundrobin", f"    option httpchk GET {check}",
                "    http-check expect status 200", "    default-server inter 1s fastinter 500ms fall 3 rise 2",
                *[f"    server {name}-{i + 1} {host}:{port} check" for i, port in enumerate(ports)], ""]

    return "\n".join([
        "# Written by `rsft serve --scale` (rsft_plugin/scaled.py); do not edit.",
        "global", "    maxconn 4096", "    log stdout format raw local0 info", "",
        "defaults", "    mode http", "    log global", "    option httplog", "    option http-server-close",
        "    timeout connect 2s", "    timeout check 10s",
        "    timeout client 120s", "    timeout server 120s", "    timeout http-request 30s", "    retries 3",
        "    option redispatch 1", "",
        "frontend rasa", f"    bind {host}:{rasa_port}", "    default_backend rasa", "",
        "frontend actions", f"    bind {host}:{action_port}", "    default_backend actions", "",
        *backend("rasa", "/", rasa_ports), *backend("actions", "/health", action_ports)])


def _database(server: PostgresServer, name: str) -> str:
    try:
        return server.create_database(name)
    except PostgresUnavailable as exc:
        if "already exists" in str(exc):
            return server.url(name)
        raise LaunchError(f"could not create the database {name}: {exc}") from exc


def _check_installed() -> None:
    missing = [path for path in (HAPROXY_BIN, REDIS_BIN) if not Path(path).exists()]
    if missing:
        raise LaunchError(f"rsft serve --scale needs {', '.join(missing)}: apt-get install haproxy redis-server "
                          "(or `make scale-servers`)")


def _wait_for_redis(host: str, port: int, password: str, timeout: float) -> None:
    """Wait until redis-server accepts `password` and answers PING (raw RESP: our Python has no Redis client)."""
    secret = password.encode()
    request = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n" % (len(secret), secret)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1) as connection:
                connection.sendall(request)
                reply = b""
                while reply.count(b"\r\n") < 2 and (chunk := connection.recv(64)):
                    reply += chunk
            if reply.startswith(b"+OK\r\n+PONG"):
                return
            if reply.startswith(b"-WRONGPASS"):
                raise LaunchError(f"redis-server on {host}:{port} refused the password (is another one running "
                                  "there?)")
        except OSError:
            pass
        time.sleep(0.2)
    raise LaunchError(f"redis-server did not answer on {host}:{port} within {timeout:.0f} s")


def _permission_hint(exc: Exception, directory: Path) -> str:
    if "Permission denied" not in str(exc):
        return ""
    return (f" (as root, PostgreSQL runs as an unprivileged user, who must be able to enter every folder above "
            f"{directory}: set paths.postgres_dir elsewhere, or set log.url)")
