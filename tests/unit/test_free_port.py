"""`free_port` never hands out a source port an outgoing connection could take."""

from __future__ import annotations

import socket

from lykeion.local.ports import _ephemeral_range, free_port


def test_ports_are_outside_the_ephemeral_range_distinct_and_bindable() -> None:
    low, high = _ephemeral_range()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert all(not low <= port <= high for port in ports)
    with socket.socket() as s:
        s.bind(("0.0.0.0", ports[-1]))  # free on every address, as the kubelet binds


def test_a_held_port_is_not_handed_out() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", free_port()))
        held.listen()
        taken = held.getsockname()[1]
        assert all(free_port() != taken for _ in range(200))
