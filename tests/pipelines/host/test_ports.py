"""Port helpers: blocks below the ephemeral range, and why a port cannot be listened on."""

from __future__ import annotations

import socket

import pytest

from pipelines.host import ports

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("kernel_range", "top"),
    [((32768, 60999), 32768), ((25000, 60999), 25000), ((1024, 65535), 32768)],
)
def test_a_block_stays_below_the_ephemeral_range_when_there_is_room(
    monkeypatch: pytest.MonkeyPatch, kernel_range: tuple[int, int], top: int
) -> None:
    monkeypatch.setattr(ports, "ephemeral_range", lambda: kernel_range)
    base = ports.free_port_block(80)
    assert base >= 20_000
    assert base + 80 <= top
    assert all(ports.port_free(base + i) for i in range(80))


def test_a_listener_is_named_as_such() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert not ports.port_free(port)
        assert ports.taken_reason(port) == "another process listens there"
    assert ports.port_free(port)
