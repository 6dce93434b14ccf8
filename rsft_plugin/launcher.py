"""Start and stop the whole assistant: the Rasa server, the action server and the chat page.

`make run` calls `rsft serve`, which uses `Stack`; the end-to-end tests use the same class on free ports, so the
tests start exactly what a user starts.

Processes and the files they own:
    rasa (.venv-rasa)         the REST channel and HTTP API; its tracker store (paths.tracker_db)
    action server (.venv)     rsft_plugin: the live model and the plugin's log (paths.db)
    web (.venv)               the chat page; it owns no file
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .config import Config
from .errors import RsftError
from .secrets import RASA_TOKEN, get_secret

_BOT_INPUTS = ("config.yml", "domain.yml", "requirements.txt")


class LaunchError(RsftError):
    """A server would not start, or the Rasa model would not train."""


def bot_fingerprint(bot_dir: Path) -> str:
    """Hash of everything `rasa train` reads: a changed bot/ means a new model, an unchanged one reuses the old."""
    digest = hashlib.sha256()
    files = [bot_dir / name for name in _BOT_INPUTS] + sorted((bot_dir / "data").rglob("*.yml"))
    for path in files:
        if path.exists():
            digest.update(str(path.relative_to(bot_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def ensure_rasa_model(config: Config, log_dir: Path) -> Path:
    """The trained Rasa model for the current bot/, training it only when no model has this fingerprint."""
    models = config.paths.run_dir / "rasa-models"
    name = f"bot-{bot_fingerprint(config.paths.bot_dir)}"
    model = models / f"{name}.tar.gz"
    if model.exists():
        return model
    models.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"Training the Rasa model for this bot/ (fingerprint {name[4:]}); this takes a minute or two ...",
          flush=True)
    bot = config.paths.bot_dir
    command = [str(config.paths.rasa_bin), "train", "--config", str(bot / "config.yml"), "--domain",
               str(bot / "domain.yml"), "--data", str(bot / "data"), "--out", str(models),
               "--fixed-model-name", name]
    with (log_dir / "rasa-train.log").open("w") as log:
        result = subprocess.run(command, cwd=bot, stdout=log, stderr=subprocess.STDOUT, env=_rasa_env())
    if result.returncode != 0 or not model.exists():
        raise LaunchError(f"rasa train failed (exit {result.returncode}); see {log_dir / 'rasa-train.log'}")
    return model


def rasa_token(config: Config) -> str:
    """RSFT_RASA_TOKEN if set, else a random token made on first start and kept with mode 0600."""
    return get_secret(config.paths.run_dir, RASA_TOKEN)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Stack:
    """The three servers of the assistant, started in order and stopped together."""

    config: Config
    log_dir: Path | None = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

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
            model = ensure_rasa_model(self.config, self.log_dir)
            self.start_actions()
            self._start_rasa(model)
            self._start_web()
        except BaseException:
            self.stop()
            raise

    def start_actions(self) -> None:
        server = self.config.server
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.config.source:
            env["RSFT_CONFIG"] = str(self.config.source)
        self._spawn("actions", [sys.executable, "-m", "actions", "--host", self.host, "--port",
                                str(server.action_port)], cwd=_repo_root(), env=env)
        self._wait("actions", f"{self.action_url}/health")

    def stop_actions(self, sig: int = signal.SIGTERM) -> None:
        self._terminate("actions", sig)

    def _start_rasa(self, model: Path) -> None:
        server, paths = self.config.server, self.config.paths
        web_origins = [f"http://{h}:{server.web_port}" for h in (self.host, "localhost", "127.0.0.1")]
        env = {**_rasa_env(), "RSFT_ACTION_URL": f"{self.action_url}/webhook",
               "RSFT_TRACKER_DB": str(paths.tracker_db), "PYTHONPATH": str(paths.bot_dir)}  # bot/channels.py
        paths.tracker_db.parent.mkdir(parents=True, exist_ok=True)
        self._spawn("rasa", [str(paths.rasa_bin), "run", "--enable-api", "--auth-token", rasa_token(self.config),
                             "--cors", *sorted(set(web_origins)), "--interface", self.host, "--port",
                             str(server.rasa_port), "--model", str(model), "--endpoints",
                             str(paths.bot_dir / "endpoints.yml"), "--credentials",
                             str(paths.bot_dir / "credentials.yml")], cwd=paths.bot_dir, env=env)
        self._wait("rasa", f"{self.rasa_url}/webhooks/rest/")

    def _start_web(self) -> None:
        config_flag = ["--config", str(self.config.source)] if self.config.source else []
        command = [sys.executable, "-m", "rsft_plugin.cli", *config_flag, "web", "--host", self.host, "--port",
                   str(self.config.server.web_port), "--rasa-url", self.rasa_url]
        self._spawn("web", command, cwd=_repo_root(), env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self._wait("web", f"{self.web_url}/healthz")

    def stop(self) -> None:
        """Stop everything this stack started (web, Rasa, actions), politely and then firmly."""
        for name in ("web", "rasa", "actions"):
            self._terminate(name, signal.SIGTERM)

    def wait(self) -> str:
        """Block until one of the servers exits; returns its name."""
        while True:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    return name
            time.sleep(0.5)

    # ---- internals -----------------------------------------------------------------------------------------

    def _spawn(self, name: str, command: list[str], cwd: Path, env: dict[str, str]) -> None:
        log = (self.log_dir / f"{name}.log").open("ab")
        # A session of its own, so stopping it also stops whatever it started (Sanic workers).
        self.processes[name] = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def _wait(self, name: str, url: str) -> None:
        deadline = time.monotonic() + self.config.server.start_timeout_seconds
        process = self.processes[name]
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise LaunchError(f"{name} exited with code {process.returncode} while starting; "
                                  f"last lines of {self.log_dir / (name + '.log')}:\n{self._tail(name)}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise LaunchError(f"{name} did not answer at {url} within {self.config.server.start_timeout_seconds:.0f} s; "
                          f"see {self.log_dir / (name + '.log')}")

    def _terminate(self, name: str, sig: int) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
        except ProcessLookupError:
            pass

    def _tail(self, name: str, lines: int = 20) -> str:
        try:
            return "\n".join((self.log_dir / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def _rasa_env() -> dict[str, str]:
    # Rasa's venv must not see ours (PYTHONPATH, VIRTUAL_ENV) and needs no telemetry or network.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update({"RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"})
    return env
