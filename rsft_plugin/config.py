"""One YAML file (rsft.yml), one dataclass per section, validated on load.

Precedence: dataclass defaults < rsft.yml < command-line overrides. Unknown sections or keys are an error
that names the valid ones, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

CONFIG_ENV = "RSFT_CONFIG"
DEFAULT_CONFIG_NAME = "rsft.yml"


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


def _check(condition: bool, section: str, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{section}.{key}: {message}")


@dataclass
class PathsConfig:
    """Where the plugin keeps its files. Relative paths are relative to the config file's folder."""

    db: Path = _help("The plugin's SQLite log: turns, ratings, rounds.", Path("var/rsft.db"))
    models_dir: Path = _help("Model versions and the LIVE pointer.", Path("var/models"))
    answers: Path = _help("The answer bank (YAML).", Path("data/answers.yml"))
    golden: Path = _help("Golden questions labelled with their topic (CSV).", Path("data/golden.csv"))
    tracker_db: Path = _help("Rasa's own tracker store (a separate SQLite file).", Path("var/rasa-tracker.db"))
    run_dir: Path = _help("Secrets, trained Rasa models and logs of `make run`.", Path("var/run"))
    bot_dir: Path = _help("The Rasa project.", Path("bot"))
    rasa_bin: Path = _help("The `rasa` executable of the Python 3.10 environment.", Path(".venv-rasa/bin/rasa"))

    def resolve(self, base: Path) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            setattr(self, f.name, value if value.is_absolute() else (base / value).resolve())


@dataclass
class ModelConfig:
    """The live response model: a bi-encoder retrieval policy softmax(cosine / temperature) over the bank."""

    temperature: float = _help("Softmax temperature of the policy over answers.", 0.05)
    top_k: int = _help("How many alternatives each logged turn records.", 3)
    trainable_layers: int = _help("How many top transformer layers fine-tuning may change.", 2)
    max_query_chars: int = _help("Longer messages are cut before encoding (the encoder sees 256 tokens).", 1000)

    def __post_init__(self) -> None:
        _check(self.temperature > 0, "model", "temperature", "must be > 0")
        _check(1 <= self.top_k <= 50, "model", "top_k", "must be between 1 and 50")
        _check(0 <= self.trainable_layers <= 6, "model", "trainable_layers", "must be between 0 and 6")
        _check(self.max_query_chars >= 16, "model", "max_query_chars", "must be >= 16")


@dataclass
class ServerConfig:
    """Ports and timings of `make run` (Rasa, action server, web page)."""

    host: str = _help("Interface every server binds to.", "127.0.0.1")
    rasa_port: int = _help("Rasa HTTP server (REST channel and API).", 5005)
    action_port: int = _help("rasa-sdk action server.", 5055)
    web_port: int = _help("Chat page.", 8000)
    reload_poll_seconds: float = _help("How often the action server checks the live pointer.", 0.5)
    start_timeout_seconds: float = _help("How long to wait for a server to come up.", 240.0)

    def __post_init__(self) -> None:
        for key in ("rasa_port", "action_port", "web_port"):
            port = getattr(self, key)
            _check(0 <= port <= 65535, "server", key, f"{port} is not a TCP port")
        _check(self.reload_poll_seconds > 0, "server", "reload_poll_seconds", "must be > 0")
        _check(self.start_timeout_seconds > 0, "server", "start_timeout_seconds", "must be > 0")


@dataclass
class Config:
    paths: PathsConfig = field(default_factory=PathsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    source: Path | None = None  # the file it was read from, for messages

    def section_names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if f.name != "source"]


def default_config_path() -> Path:
    """RSFT_CONFIG if set, else ./rsft.yml."""
    return Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_NAME)).resolve()


def load_config(path: str | Path | None = None, overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    """Read rsft.yml (if it exists) and apply overrides ({section: {key: value}}, None values ignored).

    Raises:
        ConfigError: unreadable YAML, unknown section or key, or a value of the wrong type or range.
    """
    config_path = Path(path).resolve() if path else default_config_path()
    raw: dict[str, Any] = {}
    if config_path.exists():
        try:
            raw = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config_path}: not valid YAML ({exc})") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{config_path}: the top level must be a mapping of sections")
    elif path is not None:
        raise ConfigError(f"config file {config_path} does not exist")
    merged = {name: dict(value) if isinstance(value, dict) else value for name, value in raw.items()}
    for section, values in (overrides or {}).items():
        given = {k: v for k, v in values.items() if v is not None}
        if given:
            base = merged.get(section) or {}
            merged[section] = {**base, **given} if isinstance(base, dict) else base
    config = _build_config(merged)
    config.source = config_path if config_path.exists() else None
    config.paths.resolve(config_path.parent)
    return config


def _build_config(raw: dict[str, Any]) -> Config:
    hints = typing.get_type_hints(Config)
    sections = [f.name for f in dataclasses.fields(Config) if f.name != "source"]
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ConfigError(f"unknown section(s) {unknown}; valid sections are {sorted(sections)}")
    return Config(**{name: _build_section(name, hints[name], raw.get(name) or {}) for name in sections})


def _build_section(name: str, cls: type, values: Any) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"section {name} must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{name}: unknown key(s) {unknown}; valid keys are {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {key: _coerce(name, key, hints[key], value) for key, value in values.items()}
    return cls(**kwargs)


def _coerce(section: str, key: str, hint: Any, value: Any) -> Any:
    """Accept a value of the declared type (ints for floats, strings for paths); refuse anything else."""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for kind in allowed:
        if kind is type(None) and value is None:
            return None
        if kind is Path and isinstance(value, str | Path) and str(value).strip():
            return Path(value)
        if kind is bool and isinstance(value, bool):
            return value
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            if value != value or value in (float("inf"), float("-inf")):
                raise ConfigError(f"{section}.{key}: {value!r} is not a finite number")
            return float(value)
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is str and isinstance(value, str):
            return value
        if typing.get_origin(kind) is typing.Literal and value in typing.get_args(kind):
            return value
    expected = " or ".join(_type_name(k) for k in allowed)
    raise ConfigError(f"{section}.{key}: expected {expected}, got {value!r}")


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) is typing.Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(kind))
    return getattr(kind, "__name__", str(kind))
