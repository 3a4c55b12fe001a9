"""Ports on 127.0.0.1: free ones for scratch use, and whether a server could listen on one.

A port can be taken without anything listening on it: an outgoing connection holds its local
port while open and for a minute in TIME_WAIT. Those ports come from the kernel's ephemeral
range, so a server port inside that range can be taken by chance on a busy machine.
"""

from __future__ import annotations

import socket
from pathlib import Path

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LINUX_DEFAULT_RANGE = (32768, 60999)


def free_port() -> int:
    """A port the kernel picks (from the ephemeral range): for a server started at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(part) for part in _EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return _LINUX_DEFAULT_RANGE
    return low, high


def free_port_block(size: int) -> int:
    """The first of `size` consecutive free ports on 127.0.0.1 (for scratch environments),
    drawn below the ephemeral range so that a block found free stays free."""
    import random

    low = ephemeral_range()[0]
    top = min(low, 32_768) if low - size > 20_000 else 32_768  # a range from 1024: no choice
    for _ in range(200):
        base = random.randrange(20_000, top - size)  # noqa: S311 - a port, not a secret
        if all(port_free(base + i) for i in range(size)):
            return base
    raise RuntimeError(f"no block of {size} free ports found on 127.0.0.1")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on `port`."""
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on `port` now, binding as PostgreSQL and Caddy do
    (SO_REUSEADDR): not while anything listens there or a connection holds it."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def taken_reason(port: int) -> str:
    """Why `port` cannot be listened on, in words an operator can act on."""
    if port_in_use(port):
        return "another process listens there"
    low, high = ephemeral_range()
    reason = "a connection holds it as its local port"
    if low <= port <= high:
        reason += (
            f"; it lies in the kernel's ephemeral range ({low}-{high}), which outgoing "
            f"connections draw from, so choose a port below {low}"
        )
    return reason
