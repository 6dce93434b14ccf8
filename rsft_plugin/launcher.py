"""Start and stop the whole assistant: the Rasa server, the action server and the chat page, kept running.

`make run` calls `rsft serve`, which uses `Stack`; the end-to-end tests use the same class on free ports, so the
tests start exactly what a user starts.

Processes and the files they own:
    rasa (.venv-rasa)         the REST channel and HTTP API; its tracker store (paths.tracker_db)
    action server (.venv)     rsft_plugin: the live model and the plugin's log (paths.db, or log.url)
    web (.venv)               the chat page; it owns no file

Supervision (issue 14). A crashed server is restarted; `rsft serve` gives up (stops all, exits non-zero) only
when a server keeps dying. The process work is done by supervisord (PyPI `supervisor`, see supervision.py), not by
a hand-written loop, because it fits: it is pure Python (pip-installs into .venv with no native parts; circus
would bring pyzmq and tornado), maintained, and gives per-program restarts, back-off for a program that dies
while starting, a FATAL state after `startretries`, rotated per-program logs, process-group stops and an XML-RPC
unix socket to ask it what runs. It lacks a budget for restarts of a program that had been up (it restarts those
at once, forever), so supervision.py adds one, logs each restart and writes the status file `rsft status` reads.
systemd units would do the same in production but not in tests or a developer's `make run`.

Secrets (the Rasa API token, the action server's token) reach the servers through the environment, never a
command line (/proc/<pid>/cmdline is world-readable) nor supervisord's configuration file.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Config
from .file_lock import exclusive_lock
from .rasa import rasa_pythonpath
from .secrets import ACTION_TOKEN, RASA_TOKEN, get_secret
from .supervision import LaunchError, Program, Supervisor, describe_status, launcher_gone, read_status

__all__ = ["LaunchError", "Stack", "bot_fingerprint", "ensure_rasa_model", "rasa_token",
           "servers_status_line"]

_BOT_INPUTS = ("config.yml", "domain.yml", "requirements.txt")
_NAMES = ("actions", "rasa", "web")


def bot_fingerprint(bot_dir: Path) -> str:
    """Hash of everything `rasa train` reads: a changed bot/ means a new model, an unchanged one reuses the old."""
    digest = hashlib.sha256()
    files = ([bot_dir / name for name in _BOT_INPUTS] + sorted((bot_dir / "domain").rglob("*.yml"))
             + sorted((bot_dir / "data").rglob("*.yml")))
    for path in files:
        if path.exists():
            digest.update(str(path.relative_to(bot_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def ensure_rasa_model(config: Config, log_dir: Path, announce: Callable[[str], None] = print) -> Path:
    """The trained Rasa model for the current bot/, training it only when no model has this fingerprint.

    Two launches of one bot (two `make run`s, or test workers sharing the cache) train it once: the second waits on
    the lock and then finds the model; and a model appears under its name only once `rasa train` has finished."""
    models = config.paths.run_dir / "rasa-models"
    name = f"bot-{bot_fingerprint(config.paths.bot_dir)}"
    model = models / f"{name}.tar.gz"
    if not model.exists():
        with exclusive_lock(models / f".{name}.lock"):
            if not model.exists():
                _train_rasa_model(config, models, name, log_dir, announce)
                return model
    announce(f"rsft: Rasa model: {model.name} matches bot/ (cached, no training)")
    return model


def _train_rasa_model(config: Config, models: Path, name: str, log_dir: Path, announce: Callable[[str], None]) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    announce(f"rsft: Rasa model: none for this bot/ (fingerprint {name[4:]}); training it, a minute or two "
             f"(log: {log_dir / 'rasa-train.log'}) ...")
    began = time.monotonic()
    bot = config.paths.bot_dir
    domain = bot / "domain" if (bot / "domain").is_dir() else bot / "domain.yml"  # a folder: Rasa merges its files
    partial = f".{name}.training.tar.gz"  # with its suffix: Rasa would swap ".training" for ".tar.gz"
    command = [str(config.paths.rasa_bin), "train", "--config", str(bot / "config.yml"), "--domain", str(domain),
               "--data", str(bot / "data"), "--out", str(models), "--fixed-model-name", partial]
    with (log_dir / "rasa-train.log").open("w") as log:
        training = subprocess.Popen(command, cwd=bot, stdout=log, stderr=subprocess.STDOUT, env=_rasa_env())
        while training.poll() is None:
            try:
                training.wait(timeout=10)
            except subprocess.TimeoutExpired:
                announce(f"  ... still training ({time.monotonic() - began:.0f} s)")
    trained = models / partial
    if training.returncode != 0 or not trained.exists():
        trained.unlink(missing_ok=True)
        raise LaunchError(f"rasa train failed (exit {training.returncode}); see {log_dir / 'rasa-train.log'}")
    os.replace(trained, models / f"{name}.tar.gz")
    announce(f"rsft: Rasa model trained in {time.monotonic() - began:.0f} s: {models / f'{name}.tar.gz'}")


def rasa_token(config: Config) -> str:
    """RSFT_RASA_TOKEN if set, else a random token made on first start and kept with mode 0600."""
    return get_secret(config.paths.run_dir, RASA_TOKEN)


def action_token(config: Config) -> str:
    """The shared secret Rasa sends to the action server (RSFT_ACTION_TOKEN, or made once and kept 0600)."""
    return get_secret(config.paths.run_dir, ACTION_TOKEN)


def servers_status_line(config: Config) -> str:
    """`rsft status`'s line about the servers of `rsft serve` (state and restarts of each)."""
    return describe_status(read_status(config.paths.run_dir / "logs"))


def servers_status(config: Config) -> dict[str, Any] | None:
    """The servers of `rsft serve` for the operator API (the console's header): None when it never ran here.

    state is running | stopped | gave up | gone (the status file says running but `rsft serve` is dead);
    each server has its state, whether it answers, its restarts and the time of the last one.
    """
    status = read_status(config.paths.run_dir / "logs")
    if status is None:
        return None
    return {"state": "gone" if launcher_gone(status) else status.get("state"), "failure": status.get("failure"),
            "updated_at": status.get("updated_at"),
            "servers": {name: {key: server.get(key) for key in ("state", "ready", "restarts", "last_restart")}
                        for name, server in (status.get("servers") or {}).items()}}


@dataclass
class Stack:
    """The three servers of the assistant under supervision: started in order, restarted when they die.

    `announce` receives each step of the start and each restart (print by default).
    """

    config: Config
    log_dir: Path | None = None
    announce: Callable[[str], None] = field(default=lambda line: print(line, flush=True))
    supervisor: Supervisor | None = None

    def __post_init__(self) -> None:
        self.log_dir = self.log_dir or self.config.paths.run_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)

    @property
    def host(self) -> str:
        return self.config.server.host

    @property
    def rasa_url(self) -> str:
        return f"http://{self.host}:{self.config.server.rasa_port}"

    @property
    def action_url(self) -> str:
        return f"http://{self.host}:{self.config.server.action_port}"

    @property
    def web_url(self) -> str:
        return f"http://{self.host}:{self.config.server.web_port}"

    def start(self) -> None:
        """Start actions, then Rasa, then the chat page; wait until each answers. Stops all on failure."""
        try:
            model = ensure_rasa_model(self.config, self.log_dir, self.announce)
            server = self.config.server
            self.supervisor = Supervisor(
                self._programs(model), self.log_dir, self._secrets(), announce=self.announce,
                restart_budget=server.restart_budget, restart_window_seconds=server.restart_window_seconds,
                start_timeout_seconds=server.start_timeout_seconds)
            self.announce(f"rsft: starting supervisord (logs and status in {self.log_dir})")
            self.supervisor.start_daemon()
            steps = {"actions": ("the action server (loads the live model)", f"{self.action_url}/webhook"),
                     "rasa": ("Rasa (loads its model; ~30 s on 2 cores)", f"{self.rasa_url}/webhooks/rest/webhook"),
                     "web": ("the chat page", self.web_url)}
            for name in _NAMES:
                what, url = steps[name]
                self.announce(f"rsft: starting {what} ...")
                took = self.supervisor.start(name)
                self.announce(f"rsft: {name} up at {url} ({took:.1f} s)")
            self.supervisor.watch()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop everything this stack started (web, Rasa, actions), politely and then firmly."""
        if self.supervisor is not None:
            self.supervisor.stop()

    def wait(self) -> str:
        """Block until supervision gives up on a server (its restart budget is spent); returns why."""
        return self._supervised.wait()

    def pid(self, name: str) -> int:
        """The pid of `name` (actions, rasa, web) now; 0 while it is not running."""
        return self._supervised.pid(name)

    def pids(self) -> dict[str, int]:
        return self._supervised.pids()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send `sig` to server `name` (as `kill -9` would); returns the pid that got it."""
        pid = self.pid(name)
        os.kill(pid, sig)
        return pid

    def status(self) -> dict[str, Any]:
        """What the status file says: each server's state, readiness and restarts."""
        return self._supervised.status()

    # ---- internals -----------------------------------------------------------------------------------------

    @property
    def _supervised(self) -> Supervisor:
        if self.supervisor is None:
            raise LaunchError("the stack is not started")
        return self.supervisor

    def _secrets(self) -> dict[str, str]:
        return {RASA_TOKEN[1]: rasa_token(self.config), ACTION_TOKEN[1]: action_token(self.config)}

    def _programs(self, model: Path) -> list[Program]:
        server, paths = self.config.server, self.config.paths
        config_env = {"RSFT_CONFIG": str(self.config.source)} if self.config.source else {}
        config_flag = ["--config", str(self.config.source)] if self.config.source else []
        web_origins = [f"http://{h}:{server.web_port}" for h in (self.host, "localhost", "127.0.0.1")]
        paths.tracker_db.parent.mkdir(parents=True, exist_ok=True)
        rasa_python = paths.rasa_bin.with_name("python")
        if not rasa_python.exists():
            raise LaunchError(f"no python next to {paths.rasa_bin}; the Rasa environment is incomplete")
        # rsft_plugin.rasa.rasa_run is `rasa` taking --auth-token from $RSFT_RASA_TOKEN; with rsft_plugin's folder
        # on PYTHONPATH, Rasa also imports our channel (rsft_plugin.rasa.channels). Rasa's venv must not see ours
        # (VIRTUAL_ENV, and nothing of our environment on PYTHONPATH).
        rasa_env = {"PYTHONPATH": rasa_pythonpath(), "VIRTUAL_ENV": "", **_RASA_QUIET,
                    "RSFT_ACTION_URL": f"{self.action_url}/webhook", "RSFT_TRACKER_DB": str(paths.tracker_db)}
        return [
            Program("actions", [sys.executable, "-m", "rsft_plugin.rasa", "--host", self.host, "--port",
                                str(server.action_port)], _repo_root(), config_env, f"{self.action_url}/health"),
            Program("rasa", [str(rasa_python), "-m", "rsft_plugin.rasa.rasa_run", "run", "--enable-api", "--cors",
                             *sorted(set(web_origins)), "--interface", self.host, "--port", str(server.rasa_port),
                             "--model", str(model), "--endpoints", str(paths.bot_dir / "endpoints.yml"),
                             "--credentials", str(paths.bot_dir / "credentials.yml")],
                    paths.bot_dir, rasa_env, f"{self.rasa_url}/webhooks/rest/"),
            Program("web", [sys.executable, "-m", "rsft_plugin.cli", *config_flag, "web", "--host", self.host,
                            "--port", str(server.web_port), "--rasa-url", self.rasa_url], _repo_root(), {},
                    f"{self.web_url}/healthz"),
        ]


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def _rasa_env() -> dict[str, str]:
    # Rasa's venv must not see ours (PYTHONPATH, VIRTUAL_ENV) and needs no telemetry or network.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(_RASA_QUIET)
    return env


_RASA_QUIET = {"RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
