"""Secrets of a running installation: the Rasa API token, the action server's token, the operator token and the
passwords of the private PostgreSQL and redis-server of `rsft serve --scale`.

Each comes from its environment variable when set; otherwise it is generated on first use into
`run_dir/secrets/<name>` with mode 0600 (the folder 0700), so no installation ships a default secret.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

RASA_TOKEN = ("rasa-token", "RSFT_RASA_TOKEN")
OPERATOR_TOKEN = ("operator-token", "RSFT_OPERATOR_TOKEN")
ACTION_TOKEN = ("action-token", "RSFT_ACTION_TOKEN")  # Rasa -> action server (header X-Rsft-Action-Token)
POSTGRES_PASSWORD = ("postgres-password", "RSFT_POSTGRES_PASSWORD")  # the private PostgreSQL of `rsft serve --scale`
REDIS_PASSWORD = ("redis-password", "RSFT_REDIS_PASSWORD")  # the private redis-server of `rsft serve --scale`


def get_secret(run_dir: Path, which: tuple[str, str]) -> str:
    name, env_var = which
    if os.environ.get(env_var):
        return os.environ[env_var]
    path = secret_path(run_dir, which)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return path.read_text().strip()
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def secret_path(run_dir: Path, which: tuple[str, str]) -> Path:
    return run_dir / "secrets" / which[0]


def describe_source(run_dir: Path, which: tuple[str, str]) -> str:
    """Where the secret comes from, for people (never the secret itself)."""
    name, env_var = which
    return f"${env_var}" if os.environ.get(env_var) else f"{secret_path(run_dir, which)} (mode 0600)"


def matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison, so response timing reveals nothing about the secret."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
