"""bench-speed, part 2b: REST time per turn along one long conversation, with and without bounded Rasa sessions.

Rasa loads a conversation's tracker (the events of its current session) on every message, so without a limit a
turn gets slower as the conversation grows. `server.session_max_turns` starts a new Rasa session every N customer
turns (rsft_plugin/conversation_sessions.py). Two stacks serve the same model side by side: the one under test
(the configured limit, by default the product's) and one with `session_max_turns: 0` (Rasa's inactivity expiry
only: the behaviour before the limit existed). One sender asks both the same questions, alternating turn by turn,
so both see the same load on a shared machine; the p50 per block of turns is compared, and Rasa's own API says into
how many sessions each conversation was split and how many events the largest holds (the most Rasa loads for one
message).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import requests

LONG_SENDER = "speed-long"


def measure(stack: Any, unbounded: Any, questions: list[str], sizes: dict[str, Any],
            ask: Callable[[requests.Session, Any, str, str], tuple[bool, str | None, float]]) -> dict[str, Any]:
    """Blocks of p50 REST ms for `stack` and for `unbounded` (sessions never split), and one-turn conversations."""
    session = requests.Session()
    bounded_ms: list[float] = []
    unbounded_ms: list[float] = []
    failed = 0
    for turn in range(sizes["long_conversation"]):
        question = questions[turn % len(questions)]
        pair = ((unbounded, unbounded_ms), (stack, bounded_ms))
        for server, times in pair if turn % 2 else reversed(pair):  # neither always goes first
            ok, _, ms = ask(session, server, LONG_SENDER, question)
            failed += not ok
            times.append(ms)
    fresh_ms = [ask(session, stack, f"speed-fresh-{i}", questions[i % len(questions)])[2]
                for i in range(sizes["block"])]
    result = {"session_max_turns": stack.config.server.session_max_turns, "failed": failed,
              "blocks": _blocks(bounded_ms, sizes["block"]), **session_sizes(stack),
              "one_turn_conversations_p50_ms": round(float(np.median(fresh_ms)), 1),
              "without_session_limit": {"blocks": _blocks(unbounded_ms, sizes["block"]), **session_sizes(unbounded)}}
    result["last_over_first_block"] = _ratio(result["blocks"])
    result["without_session_limit"]["last_over_first_block"] = _ratio(result["without_session_limit"]["blocks"])
    for label, numbers in ((f"session_max_turns {result['session_max_turns']}", result),
                           ("session_max_turns 0", result["without_session_limit"])):
        first, last = numbers["blocks"][0], numbers["blocks"][-1]
        print(f"  {label}: turns {first['turns']} p50 {first['p50_ms']} ms ... turns {last['turns']} p50 "
              f"{last['p50_ms']} ms (x{numbers['last_over_first_block']}); {numbers['sessions']} Rasa sessions, the "
              f"largest {numbers['largest_session_events']} events", flush=True)
    return result


def check(result: dict[str, Any] | None, params: dict[str, Any]) -> list[str]:
    """Structural checks, never timings: both conversations ran without a failed turn, and the session limit kept
    the current Rasa session smaller than the unlimited one (when the conversation is longer than the limit)."""
    if not result or not result.get("blocks") or not result.get("without_session_limit", {}).get("blocks"):
        return ["the long-conversation measurement did not run"]
    problems = [f"{result['failed']} failed turns in the long conversations"] if result["failed"] else []
    limit = result["session_max_turns"]
    unbounded = result["without_session_limit"]
    if 0 < limit < params["long_conversation"] and not (
            result["sessions"] > 1 and result["largest_session_events"] < unbounded["largest_session_events"]):
        problems.append(f"server.session_max_turns {limit} did not bound the Rasa sessions: {result['sessions']} "
                        f"sessions, the largest {result['largest_session_events']} events; without the limit "
                        f"{unbounded['largest_session_events']}")
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


def _blocks(times_ms: list[float], block: int) -> list[dict[str, Any]]:
    return [{"turns": f"{start + 1}-{start + block}",
             "p50_ms": round(float(np.median(times_ms[start:start + block])), 1)}
            for start in range(0, len(times_ms) - block + 1, block)]


def _ratio(blocks: list[dict[str, Any]]) -> float:
    return round(blocks[-1]["p50_ms"] / blocks[0]["p50_ms"], 2)
