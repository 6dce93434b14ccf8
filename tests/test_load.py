"""Load without loss: concurrent customers ask and rate over the real REST channel; afterwards the plugin's log
holds exactly what they were told was recorded — no loss, no duplicates, no 5xx, an intact database.

`make test` runs it short (RSFT_LOAD_SECONDS, default 15 s); `make load-test` runs the full 2 minutes.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
from collections import Counter

import pytest
import requests

from rsft_plugin.golden import load_golden
from rsft_plugin.launcher import Stack

from .conftest import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]
USERS = int(os.environ.get("RSFT_LOAD_USERS", "50"))
SECONDS = float(os.environ.get("RSFT_LOAD_SECONDS", "15"))


@pytest.fixture(scope="module")
def stack(chat_stack):
    return chat_stack  # test_e2e's stack: the load test counts only its own senders (load-N-M)


def test_concurrent_customers_lose_nothing(stack):
    questions = [q.question for q in load_golden(REPO / "data" / "golden.csv")]
    tally = Counter()
    recorded_turns: list[str] = []
    not_understood = [0]  # replies below model.min_score: logged as a turn, but nothing to rate
    thanked: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + SECONDS

    def customer(number: int) -> None:
        # a customer that dies names its cause here, not only through the turn counts below
        try:
            ask_and_rate(number)
        except Exception as exc:  # noqa: BLE001 - any failure of a client thread fails the test
            with lock:
                errors.append(f"customer {number} died: {exc!r}")

    def ask_and_rate(number: int) -> None:
        rng = random.Random(number)
        session = requests.Session()
        asked = 0
        while time.monotonic() < deadline:
            sender = f"load-{number}-{asked // 5}"  # a new customer every five questions
            asked += 1
            status, messages = _post(session, stack, sender, rng.choice(questions))
            with lock:
                tally[f"status {status}"] += 1
            if status != 200:
                with lock:
                    errors.append(f"{status}: {messages}")
                continue
            # 👍/👎 only: a not-understood reply carries topic buttons, an unsure answer its choices (/choose) too
            ratings = [b for m in messages for b in m.get("buttons") or [] if b["payload"].startswith("/rate")]
            if not ratings:
                if any(m.get("buttons") for m in messages):
                    with lock:
                        not_understood[0] += 1
                continue
            payload = rng.choice(ratings)["payload"]
            turn_id = json.loads(payload[len("/rate"):])["turn_id"]
            with lock:
                recorded_turns.append(turn_id)
            status, replies = _post(session, stack, sender, payload)
            with lock:
                tally[f"status {status}"] += 1
            if status == 200 and any("Thanks" in m.get("text", "") for m in replies):
                with lock:
                    thanked.append(turn_id)
            elif status != 200:
                with lock:
                    errors.append(f"{status}: {replies}")

    threads = [threading.Thread(target=customer, args=(n,)) for n in range(USERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=SECONDS + 300)
    print(f"\nload: {USERS} users for {SECONDS:g} s: {dict(tally)}; {len(recorded_turns)} answers, "
          f"{len(thanked)} ratings recorded")
    assert not errors, errors[:5]
    assert recorded_turns, "no answer came back"
    with sqlite3.connect(stack.config.paths.db) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        logged = [row[0] for row in db.execute("SELECT id FROM turns WHERE sender_id LIKE 'load-%'")]
        rated = [row[0] for row in db.execute("SELECT turn_id FROM ratings WHERE sender_id LIKE 'load-%'")]
    assert len(set(logged)) == len(logged) and set(recorded_turns) <= set(logged), "turns lost or duplicated"
    assert len(logged) == len(recorded_turns) + not_understood[0], "turns lost or invented"
    assert sorted(rated) == sorted(set(thanked)), "ratings lost or invented"


def _post(session: requests.Session, stack: Stack, sender: str, message: str) -> tuple[int, list]:
    try:
        response = session.post(f"{stack.rasa_url}/webhooks/rest/webhook", json={"sender": sender, "message": message},
                                timeout=120)
    except requests.RequestException as exc:
        return 0, [repr(exc)]
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, [response.text[:200]]
