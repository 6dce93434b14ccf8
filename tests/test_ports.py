"""Free ports for the servers tests, benchmarks and `rsft serve` start (rsft_plugin/ports.py): picked below the
kernel's ephemeral range, where no outgoing connection can take them between the pick and the server's bind."""

from __future__ import annotations

import socket

import pytest

from rsft_plugin import ports
from rsft_plugin.ports import (
    LINUX_DEFAULT_EPHEMERAL,
    NoFreePort,
    ephemeral_range,
    free_port,
    free_port_run,
    port_pool,
)


def _bind(port: int) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()


def test_picked_ports_lie_outside_the_ephemeral_range_are_bindable_and_never_repeat():
    low, high = ephemeral_range()
    picked = [free_port() for _ in range(200)]
    assert not [port for port in picked if low <= port <= high]
    assert len(set(picked)) == len(picked)
    for port in picked[:20]:
        _bind(port)  # raises when the port was taken


def test_a_run_of_ports_is_free_as_a_whole_and_disjoint_from_earlier_picks():
    earlier = {free_port() for _ in range(20)}
    first = free_port_run(4)
    run = set(range(first, first + 4))
    assert not run & earlier
    low, high = ephemeral_range()
    assert not [port for port in run if low <= port <= high]
    for port in run:
        _bind(port)
    assert free_port() not in run


def test_a_port_in_use_or_handed_out_before_is_never_picked(monkeypatch):
    monkeypatch.setattr(ports, "_handed_out", set())
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        monkeypatch.setattr(ports, "port_pool", lambda: range(taken, taken + 1))  # only the port in use
        with pytest.raises(NoFreePort):
            free_port()
    monkeypatch.setattr(ports, "port_pool", lambda: range(taken, taken + 1))  # free now: handed out once
    assert free_port() == taken
    with pytest.raises(NoFreePort):
        free_port()


@pytest.mark.parametrize(("text", "expected"), [
    ("32768\t60999\n", (32768, 60999)), ("1024 65000", (1024, 65000)), ("", LINUX_DEFAULT_EPHEMERAL),
    ("nonsense", LINUX_DEFAULT_EPHEMERAL), ("70000 80000", LINUX_DEFAULT_EPHEMERAL)])
def test_the_ephemeral_range_is_read_from_proc_with_the_linux_default_when_unreadable(tmp_path, text, expected):
    source = tmp_path / "ip_local_port_range"
    source.write_text(text)
    assert ephemeral_range(source) == expected
    assert ephemeral_range(tmp_path / "missing") == LINUX_DEFAULT_EPHEMERAL


@pytest.mark.parametrize(("ephemeral", "expected"), [
    ((32768, 60999), range(10_000, 32768)),    # stock Linux: below the range
    ((10_500, 60_000), range(60_001, 65536)),  # no room below: above it
    ((1024, 65535), range(1024, 65536))])      # no room outside: anywhere, each pick still verified by binding
def test_the_pool_lies_below_the_ephemeral_range_else_above_it(ephemeral, expected):
    assert port_pool(ephemeral) == expected
