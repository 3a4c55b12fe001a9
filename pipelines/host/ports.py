"""Ports on 127.0.0.1: free ones for scratch use, and whether a server could listen on one.

A port can be taken without anything listening on it: an outgoing connection holds its local
port while open and for a minute in TIME_WAIT. Those ports come from the kernel's ephemeral
range, so scratch ports are drawn below it, where a port found free stays free until a server
of ours takes it. DRYDOCK_PORT_RANGE narrows the draw further: each parallel test worker gets a
slice of its own, so two workers never hand out the same port.
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LINUX_DEFAULT_RANGE = (32768, 60999)
PORT_RANGE_ENV = "DRYDOCK_PORT_RANGE"  # "low-high", both inclusive
SCRATCH_LOW = 20_000
# Handed out by this process and maybe not yet listened on: never handed out twice.
_handed: set[int] = set()
# Set while `drawing_from` has narrowed this process's range (so it is not the user's).
_narrowing: list[tuple[int, int]] = []


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(part) for part in _EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return _LINUX_DEFAULT_RANGE
    return low, high


def default_range() -> tuple[int, int]:
    """From 20000 up to the ephemeral range (at most 32767)."""
    low = ephemeral_range()[0]
    # A kernel whose ephemeral range starts low leaves no safe band: use ours anyway.
    return SCRATCH_LOW, (min(low, 32_768) if low - SCRATCH_LOW > 1_000 else 32_768) - 1


def scratch_range() -> tuple[int, int]:
    """Where scratch ports come from: DRYDOCK_PORT_RANGE, or the default range."""
    value = os.environ.get(PORT_RANGE_ENV, "").strip()
    if value:
        try:
            low, high = (int(part) for part in value.split("-"))
        except ValueError:
            raise ValueError(
                f"{PORT_RANGE_ENV}={value!r} is not a range like 20000-26000"
            ) from None
        if not 1024 <= low <= high <= 65535:
            raise ValueError(f"{PORT_RANGE_ENV}={value!r}: need 1024 <= low <= high <= 65535")
        return low, high
    return default_range()


def pipeline_and_tests_ranges() -> tuple[tuple[int, int], tuple[int, int]]:
    """The default range cut in two for a deploy whose step 1 runs the test suite beside
    steps 2-4: the pipeline's own servers draw from the first sixth, the tests from the rest."""
    low, high = default_range()
    cut = low + (high - low + 1) // 6
    return (low, cut - 1), (cut, high)


@contextmanager
def drawing_from(span: tuple[int, int]) -> Iterator[None]:
    """This process (and what it starts) draws scratch ports from `span` meanwhile, unless
    DRYDOCK_PORT_RANGE was set by the user."""
    if user_range_set():
        yield
        return
    os.environ[PORT_RANGE_ENV] = f"{span[0]}-{span[1]}"
    _narrowing.append(span)
    try:
        yield
    finally:
        _narrowing.pop()
        if not _narrowing:
            os.environ.pop(PORT_RANGE_ENV, None)


def user_range_set() -> bool:
    """Whether DRYDOCK_PORT_RANGE comes from outside (a user, or a test worker's slice),
    not from this process narrowing its own draws."""
    return bool(os.environ.get(PORT_RANGE_ENV)) and not _narrowing


def split_range(low: int, high: int, parts: int, index: int) -> tuple[int, int]:
    """The `index`-th of `parts` equal slices of [low, high]."""
    width = (high - low + 1) // parts
    return low + index * width, low + (index + 1) * width - 1


def free_port_block(size: int) -> int:
    """The first of `size` consecutive free ports on 127.0.0.1, from the scratch range."""
    low, high = scratch_range()
    if high - low + 1 < size:
        raise RuntimeError(f"the port range {low}-{high} is smaller than a block of {size}")
    for _ in range(200):
        base = random.randint(low, high - size + 1)  # noqa: S311 - a port, not a secret
        ports = range(base, base + size)
        if _handed.isdisjoint(ports) and all(port_free(port) for port in ports):
            _handed.update(ports)
            return base
    raise RuntimeError(f"no block of {size} free ports found on 127.0.0.1 in {low}-{high}")


def free_port() -> int:
    """One free port from the scratch range, for a server started at once."""
    return free_port_block(1)


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
