"""bench-speed, part 2b: REST time per turn along one long conversation, with and without bounded Rasa sessions.

Rasa loads a conversation's tracker (the events of its current session) on every message, so without a limit a
turn gets slower as the conversation grows. `server.session_max_turns` starts a new Rasa session every N customer
turns (rsft_plugin/conversation_sessions.py). Two stacks serve the same model side by side: the one under test
(the configured limit, by default the product's) and one with `session_max_turns: 0` (Rasa's inactivity expiry
only: the behaviour before the limit existed). One sender asks both the same questions, alternating turn by turn
and paired with a one-turn conversation asked at the same moment, so all three see the same load on a shared
machine; the p50 per block of turns is compared (also relative to the one-turn conversations of the same block), and
Rasa's own API says into how many sessions each conversation was split and how many events the largest holds (the
most Rasa loads for one message).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import requests

LONG_SENDER = "speed-long"


def measure(stack: Any, unbounded: Any | None, questions: list[str], sizes: dict[str, Any],
            ask: Callable[[requests.Session, Any, str, str], tuple[bool, str | None, float]]) -> dict[str, Any]:
    """Blocks of p50 REST ms for `stack` and for `unbounded` (sessions never split; None: not measured), and
    one-turn conversations.

    Each turn of the long conversations is paired with a one-turn conversation on `stack`, asked at the same
    moment: the machine's load changes over minutes (other work shares it), so each block's p50 is also given
    relative to the one-turn conversations of the same block ("load-adjusted").
    """
    session = requests.Session()
    times: dict[str, list[float]] = {"bounded": [], "unbounded": [], "fresh": []}
    failed = 0
    for turn in range(sizes["long_conversation"]):
        question = questions[turn % len(questions)]
        asks = [("unbounded", unbounded, LONG_SENDER), ("bounded", stack, LONG_SENDER),
                ("fresh", stack, f"speed-fresh-{turn}")][unbounded is None:]
        rotation = turn % len(asks)
        for key, server, sender in asks[rotation:] + asks[:rotation]:  # none always goes first
            ok, _, ms = ask(session, server, sender, question)
            failed += not ok
            times[key].append(ms)
    block = sizes["block"]
    result = {"session_max_turns": stack.config.server.session_max_turns, "failed": failed,
              **_summary(times["bounded"], times["fresh"], block), **session_sizes(stack),
              "one_turn_conversations_p50_ms": round(float(np.median(times["fresh"])), 1)}
    if unbounded is not None:
        result["without_session_limit"] = {**_summary(times["unbounded"], times["fresh"], block),
                                           **session_sizes(unbounded)}
    for label, numbers in ((f"session_max_turns {result['session_max_turns']}", result),
                           ("session_max_turns 0", result.get("without_session_limit"))):
        if numbers is None:
            continue
        first, last = numbers["blocks"][0], numbers["blocks"][-1]
        print(f"  {label}: turns {first['turns']} p50 {first['p50_ms']} ms ... turns {last['turns']} p50 "
              f"{last['p50_ms']} ms (x{numbers['last_over_first_block']}, load-adjusted "
              f"x{numbers['last_over_first_block_load_adjusted']}); {numbers['sessions']} Rasa sessions, the "
              f"largest {numbers['largest_session_events']} events", flush=True)
    return result


def check(result: dict[str, Any] | None, params: dict[str, Any]) -> list[str]:
    """Structural checks, never timings: the conversations ran without a failed turn, and the session limit split
    the conversation into several Rasa sessions, the largest smaller than the unlimited one's (when the conversation
    is longer than the limit; the smoke has no unlimited one to compare with)."""
    compared = params.get("compare_unbounded", True)
    if not result or not result.get("blocks") or (compared and not result.get("without_session_limit", {}).get(
            "blocks")):
        return ["the long-conversation measurement did not run"]
    problems = [f"{result['failed']} failed turns in the long conversations"] if result["failed"] else []
    limit = result["session_max_turns"]
    unbounded_events = (result.get("without_session_limit") or {}).get("largest_session_events", float("inf"))
    if 0 < limit < params["long_conversation"] and not (
            result["sessions"] > 1 and result["largest_session_events"] < unbounded_events):
        problems.append(f"server.session_max_turns {limit} did not bound the Rasa sessions: {result['sessions']} "
                        f"sessions, the largest {result['largest_session_events']} events; without the limit "
                        f"{unbounded_events}")
    return problems


def session_sizes(stack: Any, sender: str = LONG_SENDER) -> dict[str, int]:
    """How many Rasa sessions the conversation has and how many events the largest holds: Rasa loads and replays
    at most that many for one message. From every event Rasa keeps (`include_events=ALL`: all sessions)."""
    from rsft_plugin.launcher import rasa_token

    response = requests.get(f"{stack.rasa_url}/conversations/{sender}/tracker",
                            params={"include_events": "ALL", "token": rasa_token(stack.config)}, timeout=60)
    response.raise_for_status()
    sizes = [0]  # events before the first session_started (Rasa's action_session_start), then one per session
    for event in response.json()["events"]:
        if event.get("event") == "session_started":
            sizes.append(0)
        sizes[-1] += 1
    return {"sessions": len(sizes) - 1, "largest_session_events": max(sizes[1:] or sizes)}


def _summary(times_ms: list[float], fresh_ms: list[float], block: int) -> dict[str, Any]:
    blocks = [{"turns": f"{start + 1}-{start + block}",
               "p50_ms": round(float(np.median(times_ms[start:start + block])), 1),
               "one_turn_p50_ms": round(float(np.median(fresh_ms[start:start + block])), 1)}
              for start in range(0, len(times_ms) - block + 1, block)]
    first, last = blocks[0], blocks[-1]
    adjusted = (last["p50_ms"] / last["one_turn_p50_ms"]) / (first["p50_ms"] / first["one_turn_p50_ms"])
    return {"blocks": blocks, "last_over_first_block": round(last["p50_ms"] / first["p50_ms"], 2),
            "last_over_first_block_load_adjusted": round(adjusted, 2)}
