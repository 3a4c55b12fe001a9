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
    monkeypatch.delenv(ports.PORT_RANGE_ENV, raising=False)
    monkeypatch.setattr(ports, "ephemeral_range", lambda: kernel_range)
    base = ports.free_port_block(80)
    assert base >= 20_000
    assert base + 80 <= top
    assert all(ports.port_free(base + i) for i in range(80))


def test_a_worker_draws_only_from_its_own_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = ports.split_range(20_000, 32_767, 2, 0), ports.split_range(20_000, 32_767, 2, 1)
    assert first == (20_000, 26_383)
    assert second == (26_384, 32_767)
    monkeypatch.setenv(ports.PORT_RANGE_ENV, f"{second[0]}-{second[1]}")
    drawn = [ports.free_port() for _ in range(50)]
    assert all(second[0] <= port <= second[1] for port in drawn)
    assert len(set(drawn)) == 50, "a port was handed out twice"


@pytest.mark.parametrize("value", ["20000", "a-b", "30000-20000", "80-90"])
def test_a_bad_port_range_is_named(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(ports.PORT_RANGE_ENV, value)
    with pytest.raises(ValueError, match=ports.PORT_RANGE_ENV):
        ports.free_port()


def test_a_range_too_small_for_the_block_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ports.PORT_RANGE_ENV, "21000-21009")
    with pytest.raises(RuntimeError, match="smaller than a block of 80"):
        ports.free_port_block(80)


def test_a_listener_is_named_as_such() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", ports.free_port()))
        server.listen()
        port = server.getsockname()[1]
        assert not ports.port_free(port)
        assert ports.taken_reason(port) == "another process listens there"
    assert ports.port_free(port)
