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
are served one at a time in ticket order.

Its tickets are also kept alive instead of living a fixed 60 s (Rasa's `TICKET_LOCK_LIFETIME`). A Rasa process
killed while handling a message leaves that message's ticket behind: with Rasa's lifetime the conversation's next
message, served by another Rasa, waited up to 60 s for it; and a ticket issued less than Rasa's one-second poll
after the dead one expired with it, after which Rasa's loop waited forever for a ticket that was gone (HAProxy gave
the customer a 504 after 120 s: tests/test_scaled.py's kill test, two customers in one run). Here a ticket lives
TICKET_SECONDS and is renewed every third of that while its message waits or is handled, so a live process never
loses its place, a dead one's ticket is gone within TICKET_SECONDS, and a wait whose ticket is gone anyway (Redis
restarted empty) ends in Rasa's `LockError` (the channel's fallback line) instead of waiting forever.

It runs inside Rasa's process (Python 3.10), so it imports only Rasa (and, through it, redis-py). The launcher names
it in the endpoints it writes: `lock_store: type: rsft_plugin.rasa.lock_store.SerialRedisLockStore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from rasa.core.lock import Ticket, TicketLock
from rasa.core.lock_store import LOCK_LIFETIME, LockError, RedisLockStore

logger = logging.getLogger(__name__)
T = TypeVar("T")
TICKET_SECONDS = 15.0  # a ticket outlives the process that holds it by at most this long; renewed every third
MUTEX_SECONDS = 10.0  # a mutex outlives a crashed holder by at most this long
MUTEX_WAIT_SECONDS = 30.0  # how long a step waits for the mutex before it fails (Rasa then logs a LockError)
MUTEX_POLL_SECONDS = 0.005  # the steps take milliseconds; redis-py's default poll (0.1 s) would block the loop longer


class SerialRedisLockStore(RedisLockStore):
    """`RedisLockStore` whose ticket changes for one conversation never overlap, across processes."""

    def __init__(self, endpoint_config: Any) -> None:
        # Rasa builds a lock store named by module path with the endpoint's configuration only.
        super().__init__(host=endpoint_config.url or "localhost", **endpoint_config.kwargs)

    @contextlib.asynccontextmanager
    async def lock(self, conversation_id: str, lock_lifetime: float = LOCK_LIFETIME,
                   wait_time_in_seconds: float = 1) -> AsyncIterator[TicketLock]:
        """Rasa's ticket lock, with a ticket of TICKET_SECONDS kept alive while this process waits and works
        (`lock_lifetime`, Rasa's fixed lifetime, is not used)."""
        ticket = self.issue_ticket(conversation_id, TICKET_SECONDS)
        keep_alive = asyncio.create_task(self._keep_alive(conversation_id, ticket))
        try:
            yield await self._acquire_lock(conversation_id, ticket, wait_time_in_seconds)
        finally:
            keep_alive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keep_alive
            self.cleanup(conversation_id, ticket)

    async def _acquire_lock(self, conversation_id: str, ticket: int, wait_time_in_seconds: float) -> TicketLock:
        """Rasa's wait for the ticket's turn, ending in LockError when the ticket is gone instead of waiting on."""
        while True:
            lock = self.get_lock(conversation_id)
            if _live_ticket(lock, ticket) is None:
                raise LockError(f"the ticket of conversation '{conversation_id}' is gone (expired or Redis restarted)")
            if not lock.is_locked(ticket):
                return lock
            await asyncio.sleep(wait_time_in_seconds)
            self.update_lock(conversation_id)

    async def _keep_alive(self, conversation_id: str, ticket: int) -> None:
        while True:
            await asyncio.sleep(TICKET_SECONDS / 3)
            try:
                self._serially(conversation_id, lambda: self._renew(conversation_id, ticket))
            except Exception as exc:  # noqa: BLE001 - Redis away a moment: the wait or the clean-up reports it
                logger.warning("could not renew the lock ticket of conversation '%s': %s", conversation_id, exc)

    def _renew(self, conversation_id: str, ticket: int) -> None:
        lock = self.get_lock(conversation_id)
        held = _live_ticket(lock, ticket)
        if held is not None:  # never brings back a ticket that expired or a lock Redis lost
            held.expires = time.time() + TICKET_SECONDS
            self.save_lock(lock)

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


def _live_ticket(lock: TicketLock | None, number: int) -> Ticket | None:
    return None if lock is None else next((t for t in lock.tickets if t.number == number and not t.has_expired()),
                                          None)
