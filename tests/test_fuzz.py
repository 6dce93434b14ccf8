"""Property-based and fuzz tests (hypothesis) of everything that takes outside input: over 10,000 cases in all.

Expected for any input: a clear refusal (RatingRefused, ConfigError, DataError, a 4xx) or a correct result —
never another exception, never a partial write; SQL-looking text is stored verbatim.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasa_sdk.executor import ActionExecutor

from rsft_plugin import choices, runtime
from rsft_plugin.answer_bank import AnswerBank
from rsft_plugin.assistant import Assistant
from rsft_plugin.config import load_config
from rsft_plugin.errors import ConfigError, DataError, RatingRefused, SignalRefused
from rsft_plugin.golden import load_golden
from rsft_plugin.log import SqliteLog, open_sqlite
from rsft_plugin.models.live import LiveModel
from rsft_plugin.pii import redact
from rsft_plugin.rasa.server import problem_with


def fuzz(examples: int) -> settings:
    """Fixed cases (derandomized: CI and laptops run the same inputs), no per-example deadline."""
    return settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck),
                    derandomize=True, database=None)

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40),
                         st.sampled_from(["'; DROP TABLE ratings; --", "1 OR 1=1", "NaN", "-1", "1e309", "👍"]))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                 st.dictionaries(st.text(max_size=10), inner,
                                                                                 max_size=4)), max_leaves=12)


@pytest.fixture(scope="module")
def assistant(tmp_path_factory, pretrained):
    from rsft_plugin.models.registry import Registry

    directory = tmp_path_factory.mktemp("fuzz")
    registry = Registry(directory / "models")
    registry.set_live(registry.publish(pretrained).name, "fuzz")
    store = open_sqlite(directory / "rsft.db")
    yield Assistant(store, LiveModel(registry, pretrained.config), max_ratings_per_minute=None)
    store.close()


def _snapshot(store: SqliteLog) -> tuple:
    return (list(store.db.query("SELECT * FROM turns ORDER BY rowid")),
            list(store.db.query("SELECT * FROM ratings ORDER BY rowid")))


def test_ratings_with_any_turn_id_and_score_are_recorded_or_refused_cleanly(assistant):
    own = assistant.answer("fuzz-alice", None, "where is my refund").turn_id
    other = assistant.answer("fuzz-bob", None, "where is my refund").turn_id
    turn_ids = st.one_of(json_scalars, st.sampled_from([own, other, own.upper(), own + " ", "0" * 32]))

    @fuzz(3000)
    @given(turn_id=turn_ids, score=json_values)
    def check(turn_id, score):
        before = _snapshot(assistant.store)
        try:
            reply = assistant.rate("fuzz-alice", turn_id, score)
        except RatingRefused:
            assert _snapshot(assistant.store) == before, "a refused rating changed the log"
            return
        assert turn_id == own and score in (0, 1, "0", "1", 0.0, 1.0) and not isinstance(score, bool)
        assert reply.text and assistant.store.turn(own)["rating"] == int(score)

    check()


def test_choices_with_any_turn_id_and_answer_id_are_recorded_or_refused_cleanly(assistant):
    own = assistant.answer("fuzz-dave", None, "where is my parcel").turn_id
    offered = [parsed[1] for b in assistant.rate("fuzz-dave", own, 0).buttons
               if (parsed := choices.parse_choice(b["payload"]))]
    other = assistant.answer("fuzz-erin", None, "where is my parcel").turn_id
    assistant.rate("fuzz-erin", other, 0)
    turn_ids = st.one_of(json_scalars, st.sampled_from([own, other, own.upper(), own + " ", "0" * 32]))
    answer_ids = st.one_of(json_values, st.sampled_from([*offered, "reset_password", own, "NONE", " none"]))

    @fuzz(1000)
    @given(turn_id=turn_ids, answer_id=answer_ids)
    def check(turn_id, answer_id):
        before = (_snapshot(assistant.store), list(assistant.store.db.query("SELECT * FROM signals")))
        try:
            reply = assistant.choose("fuzz-dave", turn_id, answer_id)
        except SignalRefused:
            after = (_snapshot(assistant.store), list(assistant.store.db.query("SELECT * FROM signals")))
            assert after == before, "a refused choice changed the log"
            return
        assert turn_id == own and answer_id in offered and reply.text
        assert [s.turn_id for s in assistant.store.signals(sender_id="fuzz-dave")] == [own]

    check()


@fuzz(60)
@given(text=st.text(max_size=300) | st.sampled_from(["", " ", "\x00", "'); DROP TABLE turns; --", "\u202e" * 9]))
def test_any_message_is_answered_and_logged_verbatim(assistant, text):
    reply = assistant.answer("fuzz-carol", "m", text)
    assert reply.text
    if reply.turn_id:
        assert assistant.store.turn(reply.turn_id)["user_text"] == text


section_values = st.dictionaries(st.sampled_from(["temperature", "top_k", "k", "beta", "rule", "db", "bogus",
                                                  "min_prompts", "with_replacement", "learning_rate", "r_max"]),
                                 json_values, max_size=4)
configs = st.one_of(json_values, st.dictionaries(
    st.sampled_from(["model", "sample", "reject", "paths", "collect", "finetune", "gate", "privacy", "nonsense"]),
    st.one_of(section_values, json_values), max_size=4))


@fuzz(3000)
@given(raw=configs)
def test_any_rsft_yml_loads_or_is_a_clear_config_error(tmp_path_factory, raw):
    path = tmp_path_factory.getbasetemp() / "fuzz-rsft.yml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(exc)


@fuzz(1500)
@given(content=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_malformed_answer_banks_and_golden_files_are_data_errors(tmp_path_factory, bank, content):
    path = tmp_path_factory.getbasetemp() / "fuzz-data"
    path.write_bytes(content)
    for load in (lambda: load_golden(path, bank), lambda: _load_bank(path)):
        try:
            load()
        except DataError as exc:
            assert str(exc)


def _load_bank(path):
    from rsft_plugin.answer_bank import load_answer_bank

    return load_answer_bank(path)


@fuzz(1500)
@given(records=json_values)
def test_any_bank_records_build_a_bank_or_a_data_error(records):
    try:
        bank = AnswerBank.from_records(records)
    except DataError:
        return
    assert len(bank) >= 1


action_calls = st.one_of(json_values, st.fixed_dictionaries({
    "next_action": st.one_of(st.sampled_from(["action_answer", "action_rate", "action_nope"]), json_scalars),
    "sender_id": json_scalars,
    "tracker": st.one_of(json_values, st.fixed_dictionaries({
        "sender_id": st.one_of(st.text(max_size=20), json_scalars),
        "latest_message": st.one_of(st.none(), st.fixed_dictionaries({
            "text": json_scalars, "entities": st.one_of(json_values, st.lists(st.fixed_dictionaries(
                {"entity": st.sampled_from(["turn_id", "score"]), "value": json_scalars}), max_size=3)),
            "message_id": json_scalars}), json_values),
        "events": st.one_of(st.just([]), json_values), "slots": st.one_of(st.just({}), json_values)})),
    "domain": st.one_of(st.just({"intents": []}), json_values),
}))


def test_action_server_payloads_are_run_or_refused_with_a_reason(config, live_registry):
    runtime.boot(config, watch=False)
    executor = ActionExecutor()
    executor.register_package("rsft_plugin.rasa.actions")

    @fuzz(1000)
    @given(call=action_calls)
    def check(call):
        problem = problem_with(call)
        if problem:
            assert isinstance(problem, str)
            return
        try:
            result = asyncio.run(executor.run(call))
        except Exception as exc:  # only rasa-sdk's own refusals (4xx on the wire) are acceptable
            assert type(exc).__name__ in ("ActionNotFoundException", "ActionMissingDomainException",
                                          "ActionExecutionRejection"), repr(exc)
            return
        if result is not None:
            json.dumps(result.model_dump())

    try:
        check()
    finally:
        runtime.shutdown()


@fuzz(1000)
@given(text=st.text(max_size=200))
def test_redaction_never_grows_personal_data_and_is_idempotent(text):
    once = redact(text)
    assert redact(once) == once


# The web server reads every JSON body with console.read_json and every form with console.read_form: fuzzed here
# behind the same `errors` middleware the app uses, with the shapes that once gave a 500 (issue 14, finding 6).
request_bodies = st.one_of(
    st.binary(max_size=200),
    st.integers(1, 200_000).map(lambda n: b"[" * n),
    st.integers(1, 50_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.tuples(st.integers(1, 60), json_values).map(lambda d: ("[" * d[0] + json.dumps(d[1]) + "]" * d[0]).encode()),
    st.text(max_size=60).map(lambda t: json.dumps({"text": t}).encode("utf-8", "surrogatepass")),
    st.sampled_from([b'{"text": "\\ud800 refund"}', b"\xed\xa0\x80", b"\xef\xbb\xbf{}", b"token=\xff\xfe",
                     b'--x\r\nContent-Disposition: form-data; name="token"\r\n\r\n\xff\r\n--x--\r\n']))
content_types = st.sampled_from(["application/json", "application/json; charset=bogus", "text/plain",
                                 "application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=x",
                                 "multipart/form-data; boundary=x", "multipart/form-data"])


def test_request_bodies_are_read_or_refused_with_a_400_never_a_500():
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from rsft_plugin.console import errors
    from rsft_plugin.web_input import read_form, read_json

    async def echo_json(request: web.Request) -> web.Response:
        return web.json_response({"read": type(await read_json(request)).__name__})

    async def echo_form(request: web.Request) -> web.Response:
        return web.json_response({"read": len(await read_form(request))})

    app = web.Application(middlewares=[errors])
    app.router.add_post("/api/json", echo_json)
    app.router.add_post("/api/form", echo_form)

    async def exercise(client: TestClient) -> None:
        loop = asyncio.get_running_loop()

        async def one(body: bytes, content_type: str) -> None:
            for path in ("/api/json", "/api/form"):
                response = await client.post(path, data=body, headers={"Content-Type": content_type})
                answer = await response.json()
                assert response.status in (200, 400), (path, body[:40], content_type, response.status, answer)
                assert "read" in answer if response.status == 200 else answer["error"]

        @fuzz(600)
        @given(body=request_bodies, content_type=content_types)
        def probe(body, content_type):  # hypothesis is synchronous: it runs in a thread, requests on the loop
            asyncio.run_coroutine_threadsafe(one(body, content_type), loop).result(timeout=60)

        await loop.run_in_executor(None, probe)

    async def run() -> None:
        async with TestClient(TestServer(app)) as client:
            await exercise(client)

    asyncio.run(run())

