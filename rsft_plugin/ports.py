"""Free TCP ports for the servers the launcher, the tests and the benchmarks start: one function for all of them.

Binding port 0 asks the kernel for a port from its *ephemeral* range (/proc/sys/net/ipv4/ip_local_port_range),
the same range it draws the local port of every outgoing connection from. Between picking such a port and the
server binding it, any outgoing connection on the machine (Rasa to PostgreSQL, psycopg, a Redis client, a test's
HTTP client) can be given it, and the server then fails to start ("address already in use"), or a client
connecting to the not-yet-listening port connects to itself. So ports are picked below the ephemeral range, where
the kernel never hands out outgoing ports: from a random start (two processes picking at once rarely meet), each
verified free by binding it, and never handed out twice by one process.

Example:
    port = free_port()           # e.g. 23817
    first = free_port_run(3)     # first, first + 1 and first + 2 are free: rasa_ports_from for 3 servers
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

__all__ = ["EPHEMERAL_RANGE_FILE", "NoFreePort", "ephemeral_range", "free_port", "free_port_run", "port_pool"]

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LINUX_DEFAULT_EPHEMERAL = (32768, 60999)  # what the file says on a stock Linux kernel
LOWEST_PORT = 10_000  # below: well-known and registered ports that services listen on (5432, 6379, 8080, ...)
MIN_POOL = 1_000  # fewer free-able ports than this below (or above) the ephemeral range: not worth using

_random = random.Random()  # its own generator: a test seeding `random` must not make two processes pick alike
_handed_out: set[int] = set()
_lock = threading.Lock()


class NoFreePort(RuntimeError):
    """No run of free ports was found in the pool."""


def ephemeral_range(source: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections, inclusive (Linux default when unreadable)."""
    try:
        low, high = (int(part) for part in source.read_text().split())
    except (OSError, ValueError):
        return LINUX_DEFAULT_EPHEMERAL
    return (low, high) if 0 < low <= high <= 65535 else LINUX_DEFAULT_EPHEMERAL


def port_pool(ephemeral: tuple[int, int] | None = None) -> range:
    """The ports to pick from: below the ephemeral range, else above it, else (no room outside it) any port."""
    low, high = ephemeral or ephemeral_range()
    if low - LOWEST_PORT >= MIN_POOL:
        return range(LOWEST_PORT, low)
    if 65535 - high >= MIN_POOL:
        return range(high + 1, 65536)
    return range(1024, 65536)  # the range covers nearly everything: binding still verifies the pick


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now, outside the ephemeral range, not returned before by this process."""
    return free_port_run(1)


def free_port_run(count: int, attempts: int = 200) -> int:
    """The first of `count` consecutive free ports (see `free_port`), e.g. for `scale.rasa_ports_from`.

    Raises:
        NoFreePort: none found in `attempts` random tries.
    """
    pool = port_pool()
    with _lock:
        for _ in range(attempts):
            first = _random.randrange(pool.start, pool.stop - count + 1)
            run = range(first, first + count)
            if not any(port in _handed_out for port in run) and all(is_free(port) for port in run):
                _handed_out.update(run)
                return first
    raise NoFreePort(f"no {count} consecutive free port(s) in {pool.start}-{pool.stop - 1} after {attempts} tries")


def is_free(port: int) -> bool:
    """Whether a server could bind `port` on loopback now."""
    # No SO_REUSEADDR: a port still held by a connection in TIME_WAIT is refused too, as a server without it would.
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
