"""Shared fixtures: the real answer bank, the real MiniLM (loaded once per session), real SQLite files in tmp_path."""

from __future__ import annotations

import copy
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml

from rsft_plugin import choices, runtime
from rsft_plugin.answer_bank import AnswerBank, load_answer_bank
from rsft_plugin.config import Config, load_config
from rsft_plugin.golden import load_golden
from rsft_plugin.models.registry import Registry
from rsft_plugin.models.retrieval import ResponseModel

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def bank() -> AnswerBank:
    return load_answer_bank(REPO / "data" / "answers.yml")


@pytest.fixture(scope="session")
def pretrained(bank: AnswerBank) -> ResponseModel:
    """The pretrained model over the real bank; tests that change it take `fresh_model`."""
    return ResponseModel.pretrained(bank, Config().model)


@pytest.fixture
def fresh_model(pretrained: ResponseModel) -> ResponseModel:
    return ResponseModel(copy.deepcopy(pretrained.encoder), pretrained.bank, pretrained.config)


def write_config(directory: Path, **sections: dict) -> Path:
    """An rsft.yml whose data paths point at the repo's data/ and whose state lives in `directory`.

    Its run_dir (round lock, secrets, server logs) is the test's own, so tests in parallel workers never hold each
    other's round lock; only the trained Rasa models are shared (a link to the clone's cache), so no test trains
    the bot again."""
    run_dir = _own_run_dir(directory)
    raw = {"paths": {"db": str(directory / "rsft.db"), "models_dir": str(directory / "models"),
                     "answers": str(REPO / "data" / "answers.yml"), "golden": str(REPO / "data" / "golden.csv"),
                     "tracker_db": str(directory / "tracker.db"), "run_dir": str(run_dir),
                     "rounds_dir": str(directory / "rounds"),
                     "bot_dir": str(REPO / "bot"), "rasa_bin": str(REPO / ".venv-rasa" / "bin" / "rasa")}}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    path = directory / "rsft.yml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _own_run_dir(directory: Path) -> Path:
    run_dir = directory / "run"
    shared_models = REPO / "var" / "run" / "rasa-models"
    shared_models.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "rasa-models").exists():
        (run_dir / "rasa-models").symlink_to(shared_models, target_is_directory=True)
    return run_dir


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path))


@pytest.fixture
def live_registry(config: Config, pretrained: ResponseModel) -> Registry:
    """A models dir holding the pretrained model as v0001, live."""
    registry = Registry(config.paths.models_dir)
    info = registry.publish(pretrained, notes="test")
    registry.set_live(info.name, "test")
    return registry


@pytest.fixture
def action_executor(config: Config, live_registry: Registry):
    """rasa_sdk's ActionExecutor with rsft's actions registered, the assistant booted on `config` (then shut down):
    Rasa's action calls on plain dict payloads, no Rasa server."""
    from rasa_sdk.executor import ActionExecutor

    runtime.boot(config, watch=False)
    executor = ActionExecutor()
    executor.register_package("rsft_plugin.rasa.actions")
    yield executor
    runtime.shutdown()


def relabelled(model: ResponseModel, tag: str) -> ResponseModel:
    """Same encoder, answers prefixed with `tag`: a real, distinguishable other version."""
    bank = AnswerBank.from_records([{**r, "text": f"{tag} {r['text']}"} for r in model.bank.to_records()])
    return model.with_bank(bank)


# ---- rounds ----------------------------------------------------------------------------------------------------

LENIENT_GATE = {"level": 1.0, "topic_level": 0.0, "rated_level": 0.0}  # so the round promotes
# rounds here test the plumbing, not the accuracy it buys: one epoch, not 10 (each epoch ~2.4 s of a test round)
SHORT_FINETUNE = {"max_epochs": 1}


def round_config(tmp_path, **sections):
    sections.setdefault("gate", LENIENT_GATE)
    sections.setdefault("finetune", SHORT_FINETUNE)
    sections.setdefault("worker", {"poll_seconds": 0.2})
    return load_config(write_config(tmp_path, **sections))


def feed_traffic(config, n: int = 200, noise: float = 0.2, seed: int = 0) -> None:
    """Ask golden train questions through the real Assistant and rate each answer (not a not-understood reply)
    from its label; after a 👎 that asks "Was it one of these?", click the label's answer when offered, else
    "None of these"."""
    assistant = runtime.boot(config, watch=False)
    rng = np.random.default_rng(seed)
    try:
        for i, question in enumerate(load_golden(config.paths.golden, split="train")[:n]):
            sender = f"sim-{seed}-{i}"
            reply = assistant.answer(sender, None, question.question)
            if reply.turn_id is None:  # not understood (below model.min_score): logged, but nothing to rate
                continue
            correct = assistant.store.turn(reply.turn_id)["answer_topic"] == question.topic
            rated = assistant.rate(sender, reply.turn_id, int(correct) ^ int(rng.random() < noise))
            offered = [parsed[1] for b in rated.buttons if (parsed := choices.parse_choice(b["payload"]))]
            if offered:
                topics = [(a, assistant.live.current.bank.get(a).topic) for a in offered
                          if a != choices.NONE_OF_THESE]
                assistant.choose(sender, reply.turn_id, choices.pick(topics, question.topic))
    finally:
        runtime.shutdown()


@pytest.fixture
def fed(tmp_path, pretrained):
    # fewer examples than the default 5000 (a bound); prototypes with a prior stated (the defaults) so the round
    # test's check that they reach the version cannot pass with them off
    config = round_config(tmp_path, model={"memory_size": 2000, "memory_centroid": 0.3,
                                                "memory_centroid_prior": 4.0})
    registry = Registry(config.paths.models_dir)
    registry.set_live(registry.publish(pretrained).name, "test")
    feed_traffic(config)
    return config


def start_stack(directory: Path, pretrained: ResponseModel, before_start=None, server: dict | None = None,
                stack_class=None, **sections: dict):
    """Rasa + action server + web on free ports, serving `pretrained` from `directory` (the caller stops it).

    `before_start(config)` runs once the model is live and before the servers start (to log earlier traffic).
    `stack_class`: `Stack` by default; `ScaledStack` for `rsft serve --scale`.
    """
    from rsft_plugin.launcher import Stack
    from rsft_plugin.ports import free_port

    ports = {"rasa_port": free_port(), "action_port": free_port(), "web_port": free_port()}
    config = load_config(write_config(directory, server={**ports, **(server or {})}, **sections))
    registry = Registry(config.paths.models_dir)
    registry.set_live(registry.publish(pretrained, notes="pretrained").name, "test stack")
    if before_start is not None:
        before_start(config)
    stack = (stack_class or Stack)(config, log_dir=directory / "logs")
    stack.start()
    return stack


@pytest.fixture(scope="session")
def chat_stack(tmp_path_factory, pretrained):
    """One stack of the default bot for the modules that only chat with it (test_e2e, test_load): each start costs
    ~40 s of Rasa, action server and web. A new Rasa session every 3 customer turns, so everything they do also
    runs across session boundaries. The modules' senders have their own prefixes; it stops at the session's end."""
    stack = start_stack(tmp_path_factory.mktemp("chat"), pretrained,
                        server={"reload_poll_seconds": 0.2, "session_max_turns": 3})
    yield stack
    stack.stop()


def wait_until(condition, timeout: float, what: str):
    """Poll `condition` until it returns something truthy (returned) or `timeout` seconds pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout} s")


class LoopingCustomers:
    """Customers chatting in threads (`_chat(sender)` until `_stop` is set) for as long as a `with` block runs; the
    kill tests keep traffic going while they kill servers. Subclasses say what a customer does and keeps."""

    def __init__(self, count: int, prefix: str, join_seconds: float) -> None:
        self._stop = threading.Event()
        self._join_seconds = join_seconds
        self._threads = [threading.Thread(target=self._chat, args=(f"{prefix}-{n}",), daemon=True)
                         for n in range(count)]

    def _chat(self, sender: str) -> None:
        raise NotImplementedError

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self._join_seconds)


def run_round(config: Config, **kwargs):
    """A round as its own process runs one: the parts built once from `config`, then closed."""
    from rsft_plugin.parts import build_parts
    from rsft_plugin.rounds import run_round as run

    with build_parts(config) as parts:
        return run(parts, **kwargs)


def run_worker(config: Config, *args, **kwargs):
    """The worker as `rsft worker` runs it: the parts built once from `config`, then closed."""
    from rsft_plugin.parts import build_parts
    from rsft_plugin.worker import run_worker as run

    with build_parts(config) as parts:
        return run(parts, *args, **kwargs)


def assert_interrupted_round_failed(config: Config, round_id: int) -> None:
    """The round killed mid-way is recorded as failed by the next round, with the reason."""
    from rsft_plugin.log import open_sqlite

    with open_sqlite(config.paths.db) as store:
        killed = store.round(round_id)
    assert killed["status"] == "failed" and "ended without finishing" in killed["reason"]


# ---- PostgreSQL ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server():
    """One private PostgreSQL server for the session (started on first use, stopped at the end, even on failure)."""
    from rsft_plugin.pgserver import PostgresServer

    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A new, empty database on the session's server (it goes with the server's temporary directory)."""
    return postgres_server.create_database(f"test_{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def postgres_migrated_template(postgres_server) -> str:
    """A database the log has migrated once, for tests to copy (faster than migrating each one)."""
    from rsft_plugin.log import open_postgres

    open_postgres(postgres_server.create_database("rsft_migrated")).close()
    return "rsft_migrated"


@pytest.fixture
def postgres_log_url(postgres_server, postgres_migrated_template) -> str:
    """A new database holding an empty, migrated log."""
    return postgres_server.create_database(f"test_{uuid.uuid4().hex[:12]}", template=postgres_migrated_template)
