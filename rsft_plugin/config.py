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
from .stages.rules import rule_names, unknown_rule_message

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
    rounds_dir: Path = _help("Round reports (JSON and PNG plots).", Path("var/rounds"))
    bot_dir: Path = _help("The Rasa project.", Path("bot"))
    rasa_bin: Path = _help("The `rasa` executable of the Python 3.10 environment.", Path(".venv-rasa/bin/rasa"))

    def resolve(self, base: Path) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            setattr(self, f.name, value if value.is_absolute() else (base / value).resolve())


@dataclass
class ModelConfig:
    """The live response model: a bi-encoder retrieval policy softmax(cosine / temperature) over the bank."""

    kind: str = _help("Model kind `rsft init-model` creates (a saved version records its own kind).", "retrieval")
    temperature: float = _help("Softmax temperature of the policy over answers.", 0.05)
    top_k: int = _help("How many alternatives each logged turn records.", 3)
    trainable_layers: int = _help("How many top transformer layers fine-tuning may change.", 2)
    max_query_chars: int = _help("Longer messages are cut before encoding (the encoder sees 256 tokens).", 1000)
    min_score: float = _help("Below this best cosine the bot asks again, offering topics (bench/out_of_scope).", 0.25)

    def __post_init__(self) -> None:
        from .models.kinds import KINDS  # imports no torch; the kinds' own modules load only when used

        _check(self.kind in KINDS, "model", "kind", f"must be one of {sorted(KINDS)}")
        _check(self.temperature > 0, "model", "temperature", "must be > 0")
        _check(1 <= self.top_k <= 50, "model", "top_k", "must be between 1 and 50")
        _check(0 <= self.trainable_layers <= 6, "model", "trainable_layers", "must be between 0 and 6")
        _check(self.max_query_chars >= 16, "model", "max_query_chars", "must be >= 16")
        _check(-1 <= self.min_score < 1, "model", "min_score", "must be in [-1, 1) (a cosine; -1 turns it off)")


@dataclass
class ServerConfig:
    """Ports and timings of `make run` (Rasa, action server, web page)."""

    host: str = _help("Interface every server binds to.", "127.0.0.1")
    rasa_port: int = _help("Rasa HTTP server (REST channel and API).", 5005)
    action_port: int = _help("rasa-sdk action server.", 5055)
    web_port: int = _help("Chat page.", 8000)
    reload_poll_seconds: float = _help("How often the action server checks the live pointer.", 0.5)
    start_timeout_seconds: float = _help("How long to wait for a server to come up.", 240.0)
    restart_budget: int = _help("`rsft serve` gives up when one server was restarted more than this many times "
                                "within restart_window_seconds.", 5)
    restart_window_seconds: float = _help("The window of restart_budget.", 600.0)

    def __post_init__(self) -> None:
        for key in ("rasa_port", "action_port", "web_port"):
            port = getattr(self, key)
            _check(0 <= port <= 65535, "server", key, f"{port} is not a TCP port")
        _check(self.reload_poll_seconds > 0, "server", "reload_poll_seconds", "must be > 0")
        _check(self.start_timeout_seconds > 0, "server", "start_timeout_seconds", "must be > 0")
        _check(self.restart_budget >= 0, "server", "restart_budget", "must be >= 0")
        _check(self.restart_window_seconds > 0, "server", "restart_window_seconds", "must be > 0")


@dataclass
class ConsoleConfig:
    """The operator console (/console on the web server): login sessions and inbox defaults."""

    session_minutes: float = _help("An operator session ends this many minutes after login.", 60.0)
    low_score: float = _help("Inbox 'low score' filter: answers whose cosine score is below this.", 0.4)

    def __post_init__(self) -> None:
        _check(0 < self.session_minutes <= 7 * 24 * 60, "console", "session_minutes",
               "must be > 0 and at most a week (10080)")
        _check(-1 <= self.low_score <= 1, "console", "low_score", "must be a cosine in [-1, 1]")


@dataclass
class CollectConfig:
    """Stage 1: which logged questions a round learns from."""

    min_prompts: int = _help("A round with fewer distinct new prompts stops before sampling.", 20)
    max_prompts: int = _help("At most this many prompts per round (newest first).", 2000)
    replay: int = _help("Earlier prompts replayed per round, at most.", 200)
    merge_cosine: float = _help("Prompts at least this similar are merged into one.", 0.95)
    gate_fraction: float = _help("Share of rated prompts kept out of training to check the candidate.", 0.1)

    def __post_init__(self) -> None:
        _check(self.min_prompts >= 1, "collect", "min_prompts", "must be >= 1")
        _check(self.max_prompts >= self.min_prompts, "collect", "max_prompts", "must be >= min_prompts")
        _check(self.replay >= 0, "collect", "replay", "must be >= 0")
        _check(0 < self.merge_cosine <= 1, "collect", "merge_cosine", "must be in (0, 1]")
        _check(0 <= self.gate_fraction < 1, "collect", "gate_fraction", "must be in [0, 1)")


@dataclass
class SampleConfig:
    """Stage 2: candidates drawn from the live policy."""

    k: int = _help("Candidates per prompt.", 8)
    temperature: float = _help("Temperature of the proposal policy q = softmax(cosine / temperature).", 0.1)
    with_replacement: bool = _help("Draw i.i.d. (exact for the statistical rule) instead of k distinct.", False)
    seed: int = _help("Seed of every random draw in a round.", 0)

    def __post_init__(self) -> None:
        _check(1 <= self.k <= 256, "sample", "k", "must be between 1 and 256")
        _check(self.temperature > 0, "sample", "temperature", "must be > 0")


@dataclass
class ScoreConfig:
    """Stage 3: reward = w_similarity * similarity + w_rating * smoothed rating (both in [0, 1])."""

    w_similarity: float = _help("Weight of the similarity to trusted answers.", 1.0)
    w_rating: float = _help("Weight of the smoothed customer rating.", 1.0)
    prior_up: float = _help("Beta prior: pseudo-👍 added to every (prompt, answer).", 1.0)
    prior_down: float = _help("Beta prior: pseudo-👎 added to every (prompt, answer).", 1.0)
    neighbour_cosine: float = _help("Questions at least this similar share ratings and references.", 0.85)
    trusted_rating: float = _help("An answer whose smoothed rating exceeds this is a trusted reference.", 0.5)
    max_weight_per_sender: float = _help("Most votes one sender counts for on one (prompt, answer).", 1.0)
    use_golden_train: bool = _help(
        "Treat the golden set's train split as operator-curated references (labels, not ratings).", False)

    def __post_init__(self) -> None:
        _check(self.w_similarity >= 0 and self.w_rating >= 0, "score", "w_similarity",
               "weights must be >= 0")
        _check(self.w_similarity + self.w_rating > 0, "score", "w_rating", "at least one weight must be > 0")
        _check(self.prior_up > 0 and self.prior_down > 0, "score", "prior_up", "priors must be > 0")
        _check(0 < self.neighbour_cosine <= 1, "score", "neighbour_cosine", "must be in (0, 1]")
        _check(0 <= self.trusted_rating < 1, "score", "trusted_rating", "must be in [0, 1)")
        _check(self.max_weight_per_sender > 0, "score", "max_weight_per_sender", "must be > 0")


@dataclass
class RejectConfig:
    """Stage 4: which candidates are kept for training."""

    rule: str = _help(f"A registered rejection rule (rsft_plugin/stages/rules.py): {' | '.join(rule_names())}.",
                      "statistical")
    s_min: float = _help("threshold, best_of_n, statistical per prompt: minimum similarity to a trusted answer.",
                         0.8)
    r_min: float = _help("threshold, best_of_n, statistical per prompt: minimum smoothed rating.", 0.5)
    beta: float = _help("statistical: temperature of the tilt p(c) ∝ q(c)·exp(r(c)/beta).", 0.2)
    r_max: typing.Literal["prompt", "observed", "bound"] = _help(
        "statistical: the envelope M = exp(r_max/beta). prompt: per prompt, r_max = its best answer that clears "
        "s_min and r_min (only those are eligible); observed: the round's largest reward; bound: w_similarity + "
        "w_rating. Measured in docs/benchmarks.md.", "prompt")
    min_accepted: int = _help("A round with fewer accepted samples stops before training.", 10)

    def __post_init__(self) -> None:
        _check(self.rule in rule_names(), "reject", "rule", unknown_rule_message(self.rule))
        _check(0 <= self.s_min <= 1, "reject", "s_min", "must be in [0, 1]")
        _check(0 <= self.r_min <= 1, "reject", "r_min", "must be in [0, 1]")
        _check(self.beta > 0, "reject", "beta", "must be > 0")
        _check(self.min_accepted >= 1, "reject", "min_accepted", "must be >= 1")


@dataclass
class FinetuneConfig:
    """Stage 5: fine-tuning a copy of the live model on the accepted pairs."""

    learning_rate: float = _help("AdamW learning rate (small: we adjust, not retrain).", 1e-4)
    batch_size: int = _help("Pairs per step.", 32)
    max_epochs: int = _help("Upper bound on epochs.", 10)
    patience: int = _help("Stop after this many epochs without a better validation loss.", 3)
    val_fraction: float = _help("Share of accepted pairs held out for early stopping.", 0.15)
    train_temperature: float = _help("Softmax temperature of the training loss.", 0.05)
    hard_negative_margin: float = _help("Extra cosine margin demanded against rejected candidates.", 0.1)
    seed: int = _help("Seed of shuffling and the validation split.", 0)

    def __post_init__(self) -> None:
        _check(0 < self.learning_rate < 1, "finetune", "learning_rate", "must be in (0, 1)")
        _check(self.batch_size >= 1, "finetune", "batch_size", "must be >= 1")
        _check(self.max_epochs >= 1, "finetune", "max_epochs", "must be >= 1")
        _check(self.patience >= 1, "finetune", "patience", "must be >= 1")
        _check(0 <= self.val_fraction < 1, "finetune", "val_fraction", "must be in [0, 1)")
        _check(self.train_temperature > 0, "finetune", "train_temperature", "must be > 0")
        _check(self.hard_negative_margin >= 0, "finetune", "hard_negative_margin", "must be >= 0")


@dataclass
class GateConfig:
    """Stage 6: when a candidate may replace the live model."""

    min_improvement: float = _help("Held-out accuracy gain (absolute) the candidate must show.", 0.005)
    topic_tolerance: float = _help("Largest accuracy drop allowed on any single topic.", 0.25)
    rated_tolerance: float = _help("Largest drop allowed in agreement with kept-out rated turns.", 0.05)

    def __post_init__(self) -> None:
        _check(-1 <= self.min_improvement <= 1, "gate", "min_improvement", "must be in [-1, 1]")
        _check(0 <= self.topic_tolerance <= 1, "gate", "topic_tolerance", "must be in [0, 1]")
        _check(0 <= self.rated_tolerance <= 1, "gate", "rated_tolerance", "must be in [0, 1]")


@dataclass
class WorkerConfig:
    """`rsft worker`: when rounds run by themselves."""

    interval_minutes: float = _help("Run a round this often (0: never by time).", 60.0)
    after_new_ratings: int = _help("Also run once this many new ratings arrived (0: never by count).", 50)
    poll_seconds: float = _help("How often the worker checks.", 30.0)

    def __post_init__(self) -> None:
        _check(self.interval_minutes >= 0, "worker", "interval_minutes", "must be >= 0")
        _check(self.after_new_ratings >= 0, "worker", "after_new_ratings", "must be >= 0")
        _check(self.poll_seconds > 0, "worker", "poll_seconds", "must be > 0")


@dataclass
class PrivacyConfig:
    """Personal data and rating abuse."""

    retention_days: float = _help("Raw customer text older than this is redacted in the log too.", 30.0)
    max_ratings_per_minute: int = _help("Ratings one sender may give per minute; more are refused.", 20)

    def __post_init__(self) -> None:
        _check(self.retention_days > 0, "privacy", "retention_days", "must be > 0")
        _check(self.max_ratings_per_minute >= 1, "privacy", "max_ratings_per_minute", "must be >= 1")


@dataclass
class Config:
    paths: PathsConfig = field(default_factory=PathsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    reject: RejectConfig = field(default_factory=RejectConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
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


def settings_as_yaml(config: Config) -> str:
    """Every section and key of `config` as YAML (paths as strings): what `rsft config` prints."""
    sections = {name: {key: str(value) if isinstance(value, Path) else value
                       for key, value in dataclasses.asdict(getattr(config, name)).items()}
                for name in config.section_names()}
    return yaml.safe_dump(sections, sort_keys=False, allow_unicode=True)
