"""Free TCP ports for the servers this machine starts (tests pick their own, never fixed
ones)."""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

_EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for the source ports of outgoing connections (Linux default
    32768-60999; IANA's 49152-65535 elsewhere)."""
    try:
        low, high = _EPHEMERAL_RANGE_FILE.read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49152, 65535


def free_port() -> int:
    """A TCP port no socket holds now, outside the kernel's ephemeral range.

    A port from the ephemeral range (what binding port 0 gives) can be taken, between the
    moment it is chosen and the moment a server binds it, by the source port of any
    outgoing connection on the machine, an API server's own connections to etcd
    included; a port below that range is only ever taken by a listener. Ports are
    checked free on every address (`0.0.0.0`, since the kubelet binds there) and never
    handed out twice by this process.

    Raises:
        OSError: no free port was found below the ephemeral range.
    """
    low, high = _ephemeral_range()
    candidates = range(10000, low) if low > 11000 else range(high + 1, 65536)
    rng = secrets.SystemRandom()
    for _ in range(200):
        port = rng.choice(candidates)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise OSError(f"no free TCP port found in {candidates.start}-{candidates.stop - 1}")
