"""Keep a few servers running: supervisord does the process work, this module adds what supervisord lacks.

supervisord (PyPI `supervisor`) runs in the foreground as a child of the launcher, with a configuration written
for one stack (its unix socket, mode 0700, next to the logs). It spawns each program in a process group of its
own, writes its output to `<name>.log` (rotated), restarts it when it exits, backs off (1 s, 2 s, ...) when a
program dies within `start_seconds` of being started, and marks it FATAL after `start_retries` such failures.

What supervisord does not do, `Supervisor` does, by polling its XML-RPC interface once a second: it counts the
restarts of each program (a new pid), logs each one, gives up when a program is FATAL or was restarted more
than `restart_budget` times within `restart_window_seconds` (supervisord restarts a program that had been up
at once and forever), and writes the state of every program to a small JSON file that `rsft status` reads.

Secrets never go into the configuration file or a command line: they are put in supervisord's environment, which
its children inherit (and /proc/<pid>/environ is readable only by the owner).
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import RsftError

STATUS_FILE = "serve-status.json"


class LaunchError(RsftError):
    """A server would not start, the Rasa model would not train, or a server kept dying."""


@dataclass(frozen=True)
class Program:
    """One server: its command, working directory, extra environment (no secrets) and readiness URL; the signal
    that stops it, and its priority (a lower one is stopped later: the databases after the servers using them)."""

    name: str
    command: list[str]
    cwd: Path
    environment: dict[str, str] = field(default_factory=dict)
    ready_url: str | None = None
    stop_signal: str = "TERM"
    priority: int = 999


@dataclass
class _Watch:
    pid: int = 0
    restarts: int = 0
    recent: collections.deque = field(default_factory=collections.deque)  # monotonic times of restarts
    last_restart: str | None = None
    last_exit: str | None = None
    ready: bool = False


class Supervisor:
    """supervisord plus a restart budget, a restart log and a status file, for `programs`.

    Args:
        programs: started in order by `start`, each waited for until its `ready_url` answers 200.
        state_dir: supervisord's configuration, socket and log, the programs' logs and the status file.
        secrets: environment variables every program inherits and no file or command line shows.
    """

    def __init__(self, programs: list[Program], state_dir: Path, secrets: dict[str, str] | None = None, *,
                 restart_budget: int = 5, restart_window_seconds: float = 600.0, start_seconds: int = 3,
                 start_retries: int = 3, start_timeout_seconds: float = 240.0,
                 announce: Callable[[str], None] = print) -> None:
        self.programs = {program.name: program for program in programs}
        self.state_dir = state_dir
        self.secrets = secrets or {}
        self.restart_budget = restart_budget
        self.restart_window_seconds = restart_window_seconds
        self.start_seconds = start_seconds
        self.start_retries = start_retries
        self.start_timeout_seconds = start_timeout_seconds
        self.announce = announce
        self.failure: str | None = None
        self._watch = {name: _Watch() for name in self.programs}
        self._daemon: subprocess.Popen | None = None
        self._socket_dir: Path | None = None
        self._stopping = threading.Event()
        self._gave_up = threading.Event()
        self._monitor: threading.Thread | None = None
        self._started_at = _now()

    # ---- life cycle -----------------------------------------------------------------------------------------

    @property
    def status_path(self) -> Path:
        return self.state_dir / STATUS_FILE

    @property
    def socket_path(self) -> Path:
        path = self.state_dir / "supervisor.sock"
        if len(str(path)) > 100:  # AF_UNIX paths are limited to ~108 bytes
            self._socket_dir = self._socket_dir or Path(tempfile.mkdtemp(prefix="rsft-"))
            path = self._socket_dir / "supervisor.sock"
        return path

    def start_daemon(self) -> None:
        """Write the configuration and start supervisord; return once its XML-RPC interface answers."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        conf = self.state_dir / "supervisord.conf"
        descriptor = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(self._configuration())
        env = {**os.environ, **self.secrets, "PYTHONUNBUFFERED": "1"}
        self._daemon = subprocess.Popen([sys.executable, "-m", "supervisor.supervisord", "-n", "-c", str(conf)],
                                        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=(self.state_dir / "supervisord.out").open("ab"),
                                        start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._daemon.poll() is not None:
                raise LaunchError(f"supervisord exited with code {self._daemon.returncode}; see "
                                  f"{self.state_dir / 'supervisord.out'}")
            try:
                if self._rpc().supervisor.getState()["statename"] == "RUNNING":
                    return
            except (OSError, xmlrpc.client.Error):
                pass
            time.sleep(0.1)
        raise LaunchError("supervisord did not answer on its socket within 30 s")

    def start(self, name: str) -> float:
        """Start one program and wait until it is ready; returns the seconds it took."""
        began = time.monotonic()
        program = self.programs[name]
        self._rpc().supervisor.startProcess(name, False)
        deadline = began + self.start_timeout_seconds
        next_note = began + 10
        while time.monotonic() < deadline:
            info = self._rpc().supervisor.getProcessInfo(name)
            if info["statename"] in ("BACKOFF", "EXITED", "FATAL"):
                raise LaunchError(f"{name} exited while starting ({info['description'] or info['spawnerr']}); "
                                  f"last lines of {self.log_path(name)}:\n{self.tail(name)}")
            if info["statename"] == "RUNNING" and _answers(program.ready_url):
                self._watch[name].pid = info["pid"]
                self._watch[name].ready = True
                return time.monotonic() - began
            if time.monotonic() >= next_note:
                self.announce(f"  ... still waiting for {name} ({time.monotonic() - began:.0f} s)")
                next_note += 10
            time.sleep(0.3)
        raise LaunchError(f"{name} did not answer at {program.ready_url} within {self.start_timeout_seconds:.0f} s; "
                          f"see {self.log_path(name)}")

    def watch(self) -> None:
        """Start polling supervisord in a background thread (restarts, budget, status file)."""
        self._monitor = threading.Thread(target=self._watch_loop, name="rsft-supervision", daemon=True)
        self._monitor.start()

    def wait(self) -> str:
        """Block until supervision gives up; returns why."""
        self._gave_up.wait()
        return self.failure or "supervision stopped"

    def stop(self) -> None:
        """Stop every program (process groups, TERM then KILL after 15 s) and supervisord."""
        self._stopping.set()
        if self._monitor is not None and self._monitor is not threading.current_thread():
            self._monitor.join(timeout=10)
        daemon, self._daemon = self._daemon, None
        if daemon is not None and daemon.poll() is None:
            try:
                os.killpg(daemon.pid, signal.SIGTERM)  # supervisord stops its programs, then exits
                daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._kill_everything(daemon)
            except ProcessLookupError:
                pass
        if daemon is not None:
            self._write_status("stopped" if self.failure is None else "gave up")
        if self._socket_dir is not None:
            self.socket_path.unlink(missing_ok=True)
            self._socket_dir.rmdir()
            self._socket_dir = None

    # ---- what the launcher and tests ask ----------------------------------------------------------------------

    def pid(self, name: str) -> int:
        return int(self._rpc().supervisor.getProcessInfo(name)["pid"])

    def pids(self) -> dict[str, int]:
        """supervisord's pid and every program's (0 when not running)."""
        pids = {"supervisord": self._daemon.pid if self._daemon else 0}
        for info in self._rpc().supervisor.getAllProcessInfo():
            pids[info["name"]] = int(info["pid"])
        return pids

    def status(self) -> dict[str, Any]:
        return json.loads(self.status_path.read_text(encoding="utf-8"))

    def log_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.log"

    def tail(self, name: str, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path(name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # ---- internals --------------------------------------------------------------------------------------------

    def _rpc(self) -> Any:
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, serverurl=f"unix://{self.socket_path}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def _watch_loop(self) -> None:
        while not self._stopping.wait(1.0):
            try:
                infos = {info["name"]: info for info in self._rpc().supervisor.getAllProcessInfo()}
            except (OSError, xmlrpc.client.Error) as exc:
                if self._daemon is None or self._daemon.poll() is not None:
                    self._give_up(f"supervisord exited ({exc})")
                    return
                continue
            for name, info in infos.items():
                reason = self._observe(name, info)
                if reason:
                    self._give_up(reason)
                    return
            self._write_status("running", infos)

    def _observe(self, name: str, info: dict[str, Any]) -> str | None:
        watch = self._watch[name]
        if info["statename"] == "FATAL":
            return f"{name} could not be restarted ({info['spawnerr'] or 'it kept exiting while starting'}); " \
                   f"see {self.log_path(name)}"
        pid = int(info["pid"])
        if pid and watch.pid and pid != watch.pid:
            now = time.monotonic()
            watch.restarts += 1
            watch.recent.append(now)
            while watch.recent and now - watch.recent[0] > self.restart_window_seconds:
                watch.recent.popleft()
            watch.last_restart = _now()
            watch.last_exit = f"exit status {info['exitstatus']}" if info["exitstatus"] else "killed by a signal"
            watch.ready = False
            self.announce(f"rsft: {name} (pid {watch.pid}) died ({watch.last_exit}); restarted as pid {pid} "
                          f"[restart {len(watch.recent)} of {self.restart_budget} allowed per "
                          f"{self.restart_window_seconds:.0f} s]")
            if len(watch.recent) > self.restart_budget:
                return (f"{name} was restarted {len(watch.recent)} times within "
                        f"{self.restart_window_seconds:.0f} s (budget {self.restart_budget}); giving up; "
                        f"see {self.log_path(name)}")
        if pid:
            watch.pid = pid
        if info["statename"] == "RUNNING" and not watch.ready and _answers(self.programs[name].ready_url):
            watch.ready = True
            if watch.restarts:
                self.announce(f"rsft: {name} is answering again")
        return None

    def _give_up(self, reason: str) -> None:
        self.failure = reason
        self.announce(f"rsft: {reason}")
        self._write_status("gave up")
        self._gave_up.set()

    def _write_status(self, state: str, infos: dict[str, Any] | None = None) -> None:
        infos = infos or {}
        status = {"state": state, "launcher_pid": os.getpid(), "started_at": self._started_at,
                  "updated_at": _now(), "failure": self.failure, "restart_budget": self.restart_budget,
                  "restart_window_seconds": self.restart_window_seconds, "servers": {}}
        for name, watch in self._watch.items():
            info = infos.get(name, {})
            status["servers"][name] = {
                "state": info.get("statename", "STOPPED" if state != "running" else "UNKNOWN").lower(),
                "ready": watch.ready, "pid": info.get("pid", 0), "url": self.programs[name].ready_url,
                "restarts": watch.restarts, "last_restart": watch.last_restart, "last_exit": watch.last_exit}
        temporary = self.status_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(status, indent=2), encoding="utf-8")
        temporary.replace(self.status_path)

    def _configuration(self) -> str:
        sock = _escape(str(self.socket_path))
        lines = ["[unix_http_server]", f"file={sock}", "chmod=0700", "",
                 "[supervisord]", f"logfile={_escape(str(self.state_dir / 'supervisord.log'))}",
                 f"pidfile={_escape(str(self.state_dir / 'supervisord.pid'))}", "logfile_maxbytes=5MB",
                 "logfile_backups=2", "loglevel=info", "silent=true", "", "[rpcinterface:supervisor]",
                 "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
                 "[supervisorctl]", f"serverurl=unix://{sock}", ""]
        for program in self.programs.values():
            lines += [f"[program:{program.name}]", f"command={_escape(shlex.join(program.command))}",
                      f"directory={_escape(str(program.cwd))}", "autostart=false", "autorestart=true",
                      f"startsecs={self.start_seconds}", f"startretries={self.start_retries}",
                      f"stopsignal={program.stop_signal}", f"priority={program.priority}", "stopwaitsecs=15",
                      "stopasgroup=true", "killasgroup=true",
                      "redirect_stderr=true", f"stdout_logfile={_escape(str(self.log_path(program.name)))}",
                      "stdout_logfile_maxbytes=20MB", "stdout_logfile_backups=3"]
            if program.environment:
                lines.append("environment=" + ",".join(f'{key}="{_env_value(value)}"'
                                                        for key, value in program.environment.items()))
            lines.append("")
        return "\n".join(lines)

    def _kill_everything(self, daemon: subprocess.Popen) -> None:
        for watch in self._watch.values():
            if watch.pid:
                try:
                    os.killpg(watch.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=5)
        except ProcessLookupError:
            pass


def read_status(state_dir: Path) -> dict[str, Any] | None:
    """The status file `rsft serve` keeps, or None when there is none."""
    try:
        return json.loads((state_dir / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def launcher_gone(status: dict[str, Any]) -> bool:
    """The file says running, but the `rsft serve` that keeps it is dead (it was killed without cleaning up)."""
    return status.get("state") == "running" and not _alive(status.get("launcher_pid", 0))


def describe_status(status: dict[str, Any] | None) -> str:
    """One line for `rsft status`: each server's state and restarts."""
    if status is None:
        return "servers: not started here (no rsft serve status file)"
    pid = status.get("launcher_pid", 0)
    if launcher_gone(status):
        return f"servers: unknown (rsft serve, pid {pid}, is gone; last update {status['updated_at'][:19]})"
    parts = []
    for name, server in status["servers"].items():
        restarts = server["restarts"]
        text = f"{name} {server['state']}{'' if server['ready'] or server['state'] != 'running' else ' (starting)'}"
        text += f", {restarts} restart{'s' if restarts != 1 else ''}"
        if server["last_restart"]:
            text += f" (last {server['last_restart'][11:19]} UTC)"
        parts.append(text)
    line = f"servers ({status['state']}, rsft serve pid {pid}): " + "; ".join(parts)
    return line + (f"\n  {status['failure']}" if status.get("failure") else "")


def _answers(url: str | None) -> bool:
    if url is None:
        return True
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, http.client.HTTPException):  # HTTPException: a TCP self-connect
        return False  # (a configured port in the ephemeral range, nobody listening yet; ports.py picks below it)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return pid > 0


def _escape(text: str) -> str:
    return text.replace("%", "%%")  # supervisord expands %(name)s in its configuration


def _env_value(value: str) -> str:
    if any(character in value for character in '"\'\n,'):
        raise LaunchError(f"cannot pass {value!r} through supervisord's environment= syntax")
    return _escape(value)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
