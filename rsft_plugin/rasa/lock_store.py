"""Rasa's Redis lock store with its read-modify-write steps made atomic, for several Rasa processes.

Rasa 3.6's `RedisLockStore` keeps one serialised `TicketLock` per conversation under one Redis key and changes it
by GET, change in Python, SET: issuing a ticket, dropping expired tickets, and the clean-up after a message. Two
Rasa processes that receive messages of one conversation at the same moment can both read the lock before either
writes it, so both hold the same ticket number (or one ticket is lost) and both process their message at once —
the race Rasa's own reviewers noted ("this is far from atomic", rasa#3933; rasa#9213). tests/test_scaled.py's order
test, nine messages of one sender sent at once to two Rasa processes, hit it once in five runs: two action
calls 9 ms apart, and the plugin's log and Rasa's tracker disagreed. Rasa's fix (`ConcurrentRedisLockStore`) is
not in the open-source 3.6.

`SerialRedisLockStore` runs each of those steps under a short Redis mutex of its conversation (redis-py's `Lock`:
SET NX with an expiry, released only by its owner), so every process sees every other's tickets and the messages
are served one at a time in ticket order. Waiting for the ticket itself is Rasa's own loop, unchanged.

It runs inside Rasa's process (Python 3.10), so it imports only Rasa (and, through it, redis-py). The launcher names
it in the endpoints it writes: `lock_store: type: rsft_plugin.rasa.lock_store.SerialRedisLockStore`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from rasa.core.lock_store import LOCK_LIFETIME, RedisLockStore

T = TypeVar("T")
MUTEX_SECONDS = 10.0  # a mutex outlives a crashed holder by at most this long
MUTEX_WAIT_SECONDS = 30.0  # how long a step waits for the mutex before it fails (Rasa then logs a LockError)
MUTEX_POLL_SECONDS = 0.005  # the steps take milliseconds; redis-py's default poll (0.1 s) would block the loop longer


class SerialRedisLockStore(RedisLockStore):
    """`RedisLockStore` whose ticket changes for one conversation never overlap, across processes."""

    def __init__(self, endpoint_config: Any) -> None:
        # Rasa builds a lock store named by module path with the endpoint's configuration only.
        super().__init__(host=endpoint_config.url or "localhost", **endpoint_config.kwargs)

    def issue_ticket(self, conversation_id: str, lock_lifetime: float = LOCK_LIFETIME) -> int:
        return self._serially(conversation_id, lambda: super(SerialRedisLockStore, self).issue_ticket(
            conversation_id, lock_lifetime))

    def update_lock(self, conversation_id: str) -> None:
        self._serially(conversation_id, lambda: super(SerialRedisLockStore, self).update_lock(conversation_id))

    def cleanup(self, conversation_id: str, ticket_number: int) -> None:
        # finish serving, then delete the lock if nobody waits: one step, or a ticket issued in between is deleted
        self._serially(conversation_id, lambda: super(SerialRedisLockStore, self).cleanup(conversation_id,
                                                                                          ticket_number))

    def _serially(self, conversation_id: str, step: Callable[[], T]) -> T:
        mutex = self.red.lock(f"{self.key_prefix}{conversation_id}:mutex", timeout=MUTEX_SECONDS,
                              sleep=MUTEX_POLL_SECONDS, blocking_timeout=MUTEX_WAIT_SECONDS)
        with mutex:
            return step()
