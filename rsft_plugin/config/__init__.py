"""One YAML file (rsft.yml), one dataclass per section, validated on load.

The sections live in `service.py` (paths, model, servers, console, worker, privacy, hand-off, live guard),
`loop.py` (the round's stages) and `generative.py` (the writer of the generative kind); this module reads the
file, applies overrides and builds `Config`.

Precedence: dataclass defaults < rsft.yml < $RSFT_LOG_URL (log.url only) < command-line overrides. Unknown sections
or keys are an error that names the valid ones, so a typo never silently falls back to a default.
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

from ..errors import ConfigError
from .generative import GenerativeConfig, LoraTraining, WriterSettings
from .loop import CollectConfig, FinetuneConfig, GateConfig, RejectConfig, SampleConfig, ScoreConfig
from .service import (
    ConsoleConfig,
    FeedbackConfig,
    GuardConfig,
    HandoffConfig,
    LogConfig,
    ModelConfig,
    PathsConfig,
    PrivacyConfig,
    ScaleConfig,
    ServerConfig,
    WorkerConfig,
)

__all__ = [
    "CONFIG_ENV", "LOG_URL_ENV", "CollectConfig", "Config", "ConfigError", "ConsoleConfig", "FeedbackConfig",
    "FinetuneConfig", "GateConfig", "GenerativeConfig",
    "GuardConfig", "HandoffConfig", "LogConfig", "LoraTraining", "ModelConfig", "PathsConfig", "PrivacyConfig",
    "RejectConfig", "SampleConfig", "ScaleConfig", "ScoreConfig", "ServerConfig", "WorkerConfig", "WriterSettings",
    "default_config_path", "load_config",
    "merge_overrides", "parse_overrides",
    "settings_as_yaml",
]

CONFIG_ENV = "RSFT_CONFIG"
# `rsft serve --scale` hands its servers the private PostgreSQL log this way (the URL holds a password, so never a
# file or a command line); it overrides log.url of the file and is overridden by command-line flags.
LOG_URL_ENV = "RSFT_LOG_URL"
DEFAULT_CONFIG_NAME = "rsft.yml"


@dataclass
class Config:
    paths: PathsConfig = field(default_factory=PathsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    reject: RejectConfig = field(default_factory=RejectConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    handoff: HandoffConfig = field(default_factory=HandoffConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    generative: GenerativeConfig = field(default_factory=GenerativeConfig)
    source: Path | None = None  # the file it was read from, for messages

    def __post_init__(self) -> None:
        self.model.generative = self.generative  # what a generative version is served with (ModelConfig.generative)

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
    if os.environ.get(LOG_URL_ENV) and isinstance(merged.get("log") or {}, dict):
        merged["log"] = {**(merged.get("log") or {}), "url": os.environ[LOG_URL_ENV]}
    for section, values in (overrides or {}).items():
        given = {k: v for k, v in values.items() if v is not None}
        if given:
            base = merged.get(section) or {}
            merged[section] = {**base, **given} if isinstance(base, dict) else base
    config = _build_config(merged)
    config.source = config_path if config_path.exists() else None
    config.paths.resolve(config_path.parent)
    return config


def parse_overrides(assignments: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """["reject.beta=0.5", ...] -> {"reject": {"beta": 0.5}}: the generic `--set SECTION.KEY=VALUE` of the CLI and
    the benchmarks. Values are read as YAML scalars (0.5, true, statistical); `load_config` validates them.

    Raises:
        ConfigError: an assignment that is not SECTION.KEY=VALUE, or a value that is not one YAML scalar.
    """
    sections: dict[str, dict[str, Any]] = {}
    for assignment in assignments:
        name, equals, text = assignment.partition("=")
        section, dot, key = name.strip().partition(".")
        if not equals or not dot or not section or not key:
            raise ConfigError(f"--set {assignment!r}: expected SECTION.KEY=VALUE, e.g. reject.beta=0.5")
        try:
            value = yaml.safe_load(text) if text.strip() else text
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {assignment!r}: the value is not valid YAML ({exc})") from exc
        if isinstance(value, dict | list):
            raise ConfigError(f"--set {assignment!r}: the value must be one scalar, not a mapping or a list")
        sections.setdefault(section, {})[key] = value
    return sections


def merge_overrides(*layers: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Later layers win, key by key (None values are 'not given' and never replace an earlier value)."""
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for section, values in (layer or {}).items():
            merged.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    return merged


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
    fields = _keys(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{name}: unknown key(s) {unknown}; valid keys are {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {key: _coerce(name, key, hints[key], value) for key, value in values.items()}
    return cls(**kwargs)


def _keys(cls: type) -> dict[str, dataclasses.Field]:
    """The keys a section takes in rsft.yml: its fields, less those linked from another section."""
    return {f.name: f for f in dataclasses.fields(cls) if "section" not in f.metadata}


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
        if typing.get_origin(kind) is tuple and isinstance(value, list | tuple) and value and \
                all(isinstance(item, str) and item.strip() for item in value):
            return tuple(value)
    expected = " or ".join(_type_name(k) for k in allowed)
    raise ConfigError(f"{section}.{key}: expected {expected}, got {value!r}")


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) is typing.Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(kind))
    if typing.get_origin(kind) is tuple:
        return "a non-empty list of names"
    return getattr(kind, "__name__", str(kind))


def settings_as_yaml(config: Config) -> str:
    """Every section and key of `config` as YAML (paths as strings, secrets hidden): what `rsft config` prints."""
    sections = {name: {f.name: _shown(f, getattr(getattr(config, name), f.name))
                       for f in _keys(type(getattr(config, name))).values()}
                for name in config.section_names()}
    return yaml.safe_dump(sections, sort_keys=False, allow_unicode=True)


def _shown(setting: dataclasses.Field, value: Any) -> Any:
    """A setting as `rsft config` prints it: through its `shown` function (which hides a password) when it has one."""
    if "shown" in setting.metadata:
        return setting.metadata["shown"](value)
    if isinstance(value, tuple):
        return list(value)
    return str(value) if isinstance(value, Path) else value
