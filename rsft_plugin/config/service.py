"""The sections that run the service: paths, log, model, servers, scale, console, worker, privacy, hand-off, feedback,
live guard."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from .fields import check as _check
from .fields import setting as _help
from .generative import GenerativeConfig


@dataclass
class PathsConfig:
    """Where the plugin keeps its files. Relative paths are relative to the config file's folder."""

    db: Path = _help("The plugin's SQLite log: turns, ratings, rounds (unless log.url names PostgreSQL).",
                     Path("var/rsft.db"))
    models_dir: Path = _help("Model versions and the LIVE pointer.", Path("var/models"))
    answers: Path = _help("The answer bank (YAML).", Path("data/answers.yml"))
    golden: Path = _help("Golden questions labelled with their topic (CSV).", Path("data/golden.csv"))
    tracker_db: Path = _help("Rasa's own tracker store (a separate SQLite file).", Path("var/rasa-tracker.db"))
    run_dir: Path = _help("Secrets, trained Rasa models and logs of `make run`.", Path("var/run"))
    rounds_dir: Path = _help("Round reports (JSON and PNG plots).", Path("var/rounds"))
    postgres_dir: Path = _help("The private PostgreSQL of `rsft serve --scale` when log.url is empty (its user, "
                               "not root, must be able to reach it).", Path("var/postgres"))
    bot_dir: Path = _help("The Rasa project.", Path("bot"))
    rasa_bin: Path = _help("The `rasa` executable of the Python 3.10 environment.", Path(".venv-rasa/bin/rasa"))

    def resolve(self, base: Path) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            setattr(self, f.name, value if value.is_absolute() else (base / value).resolve())


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def redact_url(url: str) -> str:
    """`url` with its password (in the user part or a `password=` parameter) replaced by ***: safe to print."""
    userinfo = re.match(r"^([a-zA-Z][\w+.-]*://)([^/?#]*)@", url)
    if userinfo and ":" in userinfo[2]:
        user = userinfo[2].partition(":")[0]
        url = f"{userinfo[1]}{user}:***@{url[userinfo.end():]}"
    return re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", url)


@dataclass
class LogConfig:
    """Where the plugin's log lives: the SQLite file at paths.db (the default), or a PostgreSQL database."""

    url: str = field(default="", metadata={
        "help": "Empty: the SQLite file at paths.db. postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE: a PostgreSQL "
                "database, for several processes or machines (the password may come from PGPASSWORD or ~/.pgpass "
                "instead; `rsft config` never prints it).",
        "shown": redact_url})

    def __post_init__(self) -> None:
        _check(self.url == "" or (self.url.startswith(POSTGRES_SCHEMES) and not any(c.isspace() for c in self.url)),
               "log", "url", f"must be empty (SQLite at paths.db) or a URL starting with {POSTGRES_SCHEMES[0]} "
               f"(got {redact_url(self.url)!r})")

    def shown_url(self) -> str:
        return redact_url(self.url)


@dataclass
class ModelConfig:
    """The live response model: a bi-encoder retrieval policy softmax(cosine / temperature) over the bank."""

    kind: str = _help("Model kind `rsft init-model` creates (a saved version records its own kind).", "retrieval")
    temperature: float = _help("Softmax temperature of the policy over answers.", 0.05)
    top_k: int = _help("How many alternatives each logged turn records, the served one included ('Was it one of "
                       "these?' offers at most top_k - 1 of them).", 4)
    trainable_layers: int = _help("How many top transformer layers fine-tuning may change.", 2)
    max_query_chars: int = _help("Longer messages are cut before encoding (the encoder sees 256 tokens).", 1000)
    min_score: float = _help("Below this best cosine the bot asks again, offering topics (bench/out_of_scope).", 0.25)
    memory_size: int = _help("Retrieval: how many accepted (question, answer) examples a round's version remembers "
                             "beside its weights, newest first (models/memory.py; 0: none; measured in rounds: "
                             "docs/benchmarks.md, 'Remembering accepted examples').", 5000)
    memory_weight: float = _help("Retrieval: how much of a near-duplicate remembered question's excess cosine "
                                 "(above memory_threshold) is added to its answer's score (a saved version keeps "
                                 "the weight and threshold it was checked with).", 0.5)
    memory_threshold: float = _help("Retrieval: the cosine from which a remembered question counts as a "
                                    "near-duplicate of the customer's.", 0.6)
    memory_centroid: float = _help("Retrieval: how far each answer's vector moves towards the mean of its "
                                   "remembered questions before a customer's is compared with it (0: not at all; "
                                   "models/memory.py; docs/benchmarks.md, 'Prototypes').", 0.3)
    memory_centroid_prior: float = _help("Retrieval: how many questions an answer's own text counts as when it "
                                         "moves towards its remembered ones: an answer n customers taught moves "
                                         "memory_centroid * n / (n + this) of the way (0: every answer the whole "
                                         "memory_centroid).", 4.0)
    # Not a key of `model:`: Config links its `generative:` section here, so whatever loads a version from
    # config.model (the action server, rounds, the CLI) serves a generative one with the configured settings.
    generative: GenerativeConfig = field(default_factory=GenerativeConfig, compare=False, repr=False,
                                         metadata={"section": "generative"})

    def __post_init__(self) -> None:
        from ..models.kinds import KINDS  # imports no torch; the kinds' own modules load only when used

        _check(self.kind in KINDS, "model", "kind", f"must be one of {sorted(KINDS)}")
        _check(self.temperature > 0, "model", "temperature", "must be > 0")
        _check(1 <= self.top_k <= 50, "model", "top_k", "must be between 1 and 50")
        _check(0 <= self.trainable_layers <= 6, "model", "trainable_layers", "must be between 0 and 6")
        _check(self.max_query_chars >= 16, "model", "max_query_chars", "must be >= 16")
        _check(-1 <= self.min_score < 1, "model", "min_score", "must be in [-1, 1) (a cosine; -1 turns it off)")
        _check(0 <= self.memory_size <= 100_000, "model", "memory_size", "must be between 0 and 100000")
        _check(0 <= self.memory_weight <= 2, "model", "memory_weight", "must be in [0, 2]")
        _check(0 <= self.memory_threshold < 1, "model", "memory_threshold", "must be in [0, 1)")
        _check(0 <= self.memory_centroid < 1, "model", "memory_centroid", "must be in [0, 1)")
        _check(0 <= self.memory_centroid_prior <= 1000, "model", "memory_centroid_prior", "must be in [0, 1000]")


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
    session_max_turns: int = _help("After this many customer turns in one Rasa session the next message starts a "
                                   "new one, so the tracker Rasa loads per message stays bounded; slots carry over "
                                   "as bot/domain.yml's session_config says (0: only Rasa's inactivity expiry).", 20)

    def __post_init__(self) -> None:
        for key in ("rasa_port", "action_port", "web_port"):
            port = getattr(self, key)
            _check(0 <= port <= 65535, "server", key, f"{port} is not a TCP port")
        _check(self.reload_poll_seconds > 0, "server", "reload_poll_seconds", "must be > 0")
        _check(self.start_timeout_seconds > 0, "server", "start_timeout_seconds", "must be > 0")
        _check(self.restart_budget >= 0, "server", "restart_budget", "must be >= 0")
        _check(self.restart_window_seconds > 0, "server", "restart_window_seconds", "must be > 0")
        _check(self.session_max_turns >= 0, "server", "session_max_turns", "must be >= 0 (0 turns it off)")


@dataclass
class ScaleConfig:
    """`rsft serve --scale`: several Rasa and action servers behind HAProxy, with PostgreSQL and Redis.

    The load balancer listens on server.rasa_port and server.action_port (what one process of each listens on
    without --scale), so the chat page, the console and `rsft simulate` need no other URL.
    """

    rasa_servers: int = _help("Rasa server processes behind the load balancer.", 2)
    action_servers: int = _help("Action server processes behind the load balancer.", 2)
    rasa_ports_from: int = _help("Rasa server i (1..rasa_servers) listens on rasa_ports_from + i - 1.", 5105)
    action_ports_from: int = _help("Action server i listens on action_ports_from + i - 1.", 5155)
    redis_url: str = field(default="", metadata={
        "help": "Rasa's lock store, redis://[:PASSWORD@]HOST:PORT/DB (empty: start redis-server on redis_port, with a "
                "generated password); the password reaches Rasa through its environment, `rsft config` shows ***.",
        "shown": redact_url})
    redis_port: int = _help("Port of the redis-server --scale starts when redis_url is empty.", 6380)
    postgres_port: int = _help("Port of the private PostgreSQL --scale starts (in paths.run_dir/postgres) when "
                               "log.url is empty; it holds the log and Rasa's trackers.", 5433)
    tracker_url: str = field(default="", metadata={
        "help": "Rasa's tracker store, postgresql://USER:PASSWORD@HOST:PORT/DB (empty: the database rasa_tracker on "
                "the private server, or log.url's own database when log.url is set).", "shown": redact_url})

    def __post_init__(self) -> None:
        _check(1 <= self.rasa_servers <= 32, "scale", "rasa_servers", "must be between 1 and 32")
        _check(1 <= self.action_servers <= 32, "scale", "action_servers", "must be between 1 and 32")
        for key in ("rasa_ports_from", "action_ports_from", "redis_port", "postgres_port"):
            _check(1024 <= getattr(self, key) <= 65000, "scale", key, "must be a TCP port in 1024..65000")
        _check(self.redis_url == "" or (self.redis_url.startswith("redis://") and not any(c.isspace() for c in
                                                                                         self.redis_url)),
               "scale", "redis_url", "must be empty (start redis-server) or a redis://[:PASSWORD@]HOST:PORT/DB URL "
               f"(got {redact_url(self.redis_url)!r})")
        _check(self.tracker_url == "" or self.tracker_url.startswith(POSTGRES_SCHEMES), "scale", "tracker_url",
               f"must be empty or a URL starting with {POSTGRES_SCHEMES[0]} (got {redact_url(self.tracker_url)!r})")

    def ports(self) -> dict[str, list[int]]:
        """The ports every backend and private server of the scaled stack takes."""
        return {"rasa": [self.rasa_ports_from + i for i in range(self.rasa_servers)],
                "actions": [self.action_ports_from + i for i in range(self.action_servers)],
                "redis": [self.redis_port] if not self.redis_url else [], "postgres": [self.postgres_port]}


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
class HandoffConfig:
    """Talking to a person: when the bot offers it, and what it tells a customer who gives no email."""

    offer_after_thumbs_down: int = _help("From this many 👎 in one conversation on, the rating reply offers "
                                         "'Talk to a person' (0: never).", 2)
    support_email: str = _help("Where a customer who gives no email can write to the support team.",
                               "support@northwindgoods.example")

    def __post_init__(self) -> None:
        _check(self.offer_after_thumbs_down >= 0, "handoff", "offer_after_thumbs_down", "must be >= 0")
        _check("@" in self.support_email and not any(c.isspace() for c in self.support_email), "handoff",
               "support_email", "must be an email address")


@dataclass
class FeedbackConfig:
    """What customers tell us besides 👍/👎, and how much each kind counts (in a round's reward and the live guard).

    "Was it one of these?": after a 👎 the bot offers the next-best answers; a pick answers the customer and is a
    strong signal for (question, picked answer). Implicit signals: what a customer does right after an answer.
    Every weight of 0 turns its signal off (not offered / not detected, nothing recorded).
    """

    choices: int = _help("After a 👎, offer this many next-best answers plus 'None of these' (0: off; at most "
                         "model.top_k - 1 exist: the turn's logged alternatives).", 3)
    choices_up_front_margin: float = _help("Offer the choices with the answer itself when the live model's top two "
                                           "answers' probabilities differ by less than this (0: never; 0.4 "
                                           "measured best of 0, 0.2 and 0.4 at 20 % wrong ratings, "
                                           "docs/benchmarks.md).", 0.4)
    choice_weight: float = _help("A picked answer counts as this many 👍 for it on that question.", 3.0)
    none_weight: float = _help("'None of these' counts as this many 👎 for each answer it was offered.", 0.5)
    reask_weight: float = _help("Asking a similar question again right after an answer: a 👎 of this weight on "
                                "that answer (0: off).", 0.3)
    reask_cosine: float = _help("How similar (MiniLM cosine) the next question must be to count as re-asked.", 0.5)
    asked_human_weight: float = _help("Asking for a person right after an answer: a 👎 of this weight (0: off).", 0.3)
    thanks_weight: float = _help("Saying thanks or goodbye right after an answer: a 👍 of this weight (0: off).", 0.3)
    resolved_weight: float = _help("A question the bot missed (👎, 'None of these' or not understood) that the "
                                   "customer then put in other words (their next question, within window_seconds, "
                                   "similar by resolved_cosine) and got a 👍 or a pick for: that answer counts as a "
                                   "pick of this weight for the first question too (0: off).", 0.0)
    resolved_cosine: float = _help("How similar (MiniLM cosine) the next question must be to the missed one to "
                                   "count as it in other words: lower than reask_cosine, since the bot has just "
                                   "asked for a rephrase (two questions of one intent: median 0.44-0.60 on the "
                                   "benchmark's datasets, of two intents 0.14-0.19).", 0.4)
    label_weight: float = _help("An operator's label of a turn's right answer (the console's 'Right answer') counts "
                                "as this many 👍 for it on that question, a pick's kind of evidence, and the "
                                "turn's own rating and signals no longer count (0: labels are ignored).", 5.0)
    grounding_weight: float = _help("A 👍/👎 on a written reply (generative kind) also counts as this many 👍/👎 for "
                                    "the bank answer it was written from, on that question (0: off).", 1.0)
    window_seconds: int = _help("'Right after' an answer: the customer's next message, within this many seconds.",
                                300)

    def __post_init__(self) -> None:
        _check(0 <= self.choices <= 5, "feedback", "choices", "must be in 0..5 (buttons a customer can read)")
        _check(0 <= self.choices_up_front_margin <= 1, "feedback", "choices_up_front_margin", "must be in [0, 1]")
        for name in ("choice_weight", "none_weight", "reask_weight", "asked_human_weight", "thanks_weight",
                     "resolved_weight", "label_weight", "grounding_weight"):
            _check(0 <= getattr(self, name) <= 10, "feedback", name, "must be in [0, 10] (0 turns it off)")
        _check(0 < self.reask_cosine <= 1, "feedback", "reask_cosine", "must be in (0, 1]")
        _check(0 < self.resolved_cosine <= 1, "feedback", "resolved_cosine", "must be in (0, 1]")
        _check(self.window_seconds >= 1, "feedback", "window_seconds", "must be >= 1")


@dataclass
class GuardConfig:
    """The live guard: after a promotion, roll back by itself when customers like the new version less than its
    parent (a Bayesian sequential test on Beta posteriors, checked by `rsft worker` at every poll and `rsft guard`)."""

    enabled: bool = _help("Check the live version against its parent (false: never roll back by itself).", True)
    confidence: float = _help("Roll back when P(new 👍 rate < parent's - margin) reaches this.", 0.95)
    margin: float = _help("How much worse (a share, 0.05 = 5 points of 👍 rate) counts as worse.", 0.05)
    min_ratings: int = _help("Judge only with at least this many pieces of evidence on each side.", 30)
    parent_window: int = _help("The parent's side: its newest this-many rated answers before the switch.", 500)
    signals: str = _help("Comma-separated evidence the guard counts: readers of live_guard.SIGNALS — ratings, "
                         "choices (picks / 'None of these'), implicit (at the feedback weights).",
                         "ratings,choices,implicit")

    def __post_init__(self) -> None:
        _check(0.5 <= self.confidence < 1, "guard", "confidence", "must be in [0.5, 1)")
        _check(0 <= self.margin < 1, "guard", "margin", "must be in [0, 1) (a share of the 👍 rate)")
        _check(self.min_ratings >= 1, "guard", "min_ratings", "must be >= 1")
        _check(self.parent_window >= self.min_ratings, "guard", "parent_window", "must be >= guard.min_ratings")
        from ..live_guard import SIGNALS  # the signal readers; imports no torch, and config is loaded by then

        unknown = [name for name in self.signal_names if name not in SIGNALS]
        _check(bool(self.signal_names) and not unknown, "guard", "signals",
               f"must name one or more of {sorted(SIGNALS)} (got {self.signals!r})")

    @property
    def signal_names(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.signals.split(",") if name.strip())
