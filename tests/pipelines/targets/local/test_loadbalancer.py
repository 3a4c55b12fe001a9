"""Caddy as the local ALB: real Caddy, real HTTP, replicas on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from pipelines.targets.local.loadbalancer import LoadBalancer, LoadBalancerError

from .conftest import Replica, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

# Quick to notice a replica that answers 503 or refuses (two probes 0.2 s apart), but not
# thrown by one slow probe: the replicas here are threads of a test worker that shares two
# cores with two more, and a 0.5 s timeout with one failure took a healthy slot out of
# rotation mid-test under that load.
FAST = {
    "health_interval": 0.2,
    "health_timeout": 2.0,
    "health_passes": 1,
    "health_fails": 2,
    "fail_duration": 2.0,
    "try_duration": 3.0,
    "try_interval": 0.02,
}


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def make_lb() -> Iterator[Callable[..., LoadBalancer]]:
    # a short directory: the admin socket path must fit in 107 bytes
    root = Path(tempfile.mkdtemp(prefix="lb-", dir="/tmp"))
    made: list[LoadBalancer] = []

    def make(slot_ports: list[int], listen_port: int | None = None) -> LoadBalancer:
        lb = LoadBalancer(
            root / f"lb{len(made)}", listen_port or free_port(), slot_ports, "/ready", **FAST
        )
        made.append(lb)
        return lb

    yield make
    for lb in made:
        lb.stop()
    shutil.rmtree(root, ignore_errors=True)


def healthy(lb: LoadBalancer) -> list[bool]:
    return [u.healthy for u in lb.upstreams()]


def bodies(lb: LoadBalancer, n: int) -> list[str]:
    with httpx.Client(base_url=lb.url, timeout=5) as client:
        return [client.get("/work").text for _ in range(n)]


def test_traffic_reaches_only_ready_slots(
    make_lb: Callable[..., LoadBalancer], replicas: Callable[..., Replica]
) -> None:
    ready, unready, empty_port = replicas("a"), replicas("b", ready=False), free_port()
    lb = make_lb([ready.port, unready.port, empty_port])
    assert lb.start() is True
    wait_for(lambda: healthy(lb) == [True, False, False], what="health of the three slots")
    assert set(bodies(lb, 30)) == {"a"}
    assert unready.hits == 0
    statuses = lb.upstreams()
    assert [u.address for u in statuses] == [f"127.0.0.1:{p}" for p in lb.slot_ports]
    assert [u.slot for u in statuses] == [0, 1, 2]
    assert [u.port for u in statuses] == lb.slot_ports


def test_health_checks_carry_no_forwarded_for_and_forwarded_traffic_always_does(
    make_lb: Callable[..., LoadBalancer], replicas: Callable[..., Replica]
) -> None:
    """The service tells the load balancer's own probes from forwarded traffic by this, to
    exempt the probes from its per-source limit (service/middleware.py)."""
    a = replicas("a")
    lb = make_lb([a.port])
    lb.start()
    wait_for(lambda: len(a.probe_headers) >= 2, what="two active health checks")
    with httpx.Client(base_url=lb.url, timeout=5) as client:
        assert client.get("/work").status_code == 200
        spoofed = client.get("/work", headers={"X-Forwarded-For": "198.51.100.7"})
        assert spoofed.status_code == 200
        # A client asking for the probe's path is forwarded traffic like any other.
        client.get("/ready")

    def forwarded_for(headers: dict[str, str]) -> str | None:
        return next((v for k, v in headers.items() if k.lower() == "x-forwarded-for"), None)

    probes = [forwarded_for(headers) for headers in a.probe_headers]
    assert probes.count(None) >= 2, "Caddy's own health checks carry none"
    assert [hop for hop in probes if hop is not None] == ["127.0.0.1"], "the client's /ready"
    traffic = [forwarded_for(headers) for headers in a.traffic_headers]
    assert traffic == ["127.0.0.1", "127.0.0.1"], "Caddy sets it; a client cannot drop it"


def test_a_slot_turning_unready_stops_getting_traffic_and_comes_back(
    make_lb: Callable[..., LoadBalancer], replicas: Callable[..., Replica]
) -> None:
    a, b = replicas("a"), replicas("b")
    lb = make_lb([a.port, b.port])
    lb.start()
    assert set(bodies(lb, 20)) == {"a", "b"}
    b.ready = False
    # fails=2 at a 0.2 s interval: out of rotation within two or three intervals
    wait_for(lambda: healthy(lb) == [True, False], timeout=3, what="b to turn unhealthy")
    assert set(bodies(lb, 20)) == {"a"}
    b.ready = True
    wait_for(lambda: healthy(lb) == [True, True], timeout=3, what="b to turn healthy")
    assert "b" in set(bodies(lb, 20))


def test_killing_a_replica_under_load_fails_no_request(
    make_lb: Callable[..., LoadBalancer], replicas: Callable[..., Replica]
) -> None:
    a, b, c = replicas("a"), replicas("b"), replicas("c")
    lb = make_lb([a.port, b.port, c.port])
    lb.start()
    total, kill_at, deadline = 2000, 600, time.monotonic() + 30
    done, failures, lock = [0], [], threading.Lock()
    local = threading.local()

    def one(_: int) -> None:
        if time.monotonic() > deadline:
            failures.append("deadline")
            return
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=lb.url, timeout=5)
        try:
            response = local.client.get("/work")
            if response.status_code != 200:
                failures.append(response.status_code)
        except httpx.HTTPError as exc:
            failures.append(repr(exc))
        with lock:
            done[0] += 1
            if done[0] == kill_at:
                b.stop()  # the listener closes, as a replica does on SIGTERM

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(total)))
    elapsed = time.monotonic() - started
    assert failures == []
    assert done[0] == total
    assert a.hits + b.hits + c.hits == total
    assert a.hits > kill_at // 3
    assert c.hits > kill_at // 3
    print(f"{total} requests in {elapsed:.2f}s, 0 failed; b served {b.hits}")


def test_start_is_idempotent_and_converges_a_changed_config(
    make_lb: Callable[..., LoadBalancer], replicas: Callable[..., Replica]
) -> None:
    a = replicas("a")
    lb = make_lb([a.port])
    assert lb.start() is True
    pid = lb.pid()
    assert lb.start() is False  # same config: nothing changes
    again = LoadBalancer(lb.home, lb.listen_port, lb.slot_ports, "/ready", **FAST)
    assert again.is_running()
    assert again.start() is False
    changed = LoadBalancer(
        lb.home, lb.listen_port, lb.slot_ports, "/ready", **{**FAST, "health_fails": 3}
    )
    assert changed.start() is True  # reloaded in place
    assert changed.pid() == pid
    assert bodies(lb, 3) == ["a", "a", "a"]


@pytest.mark.skipif(
    not os.access(sys.executable, os.X_OK), reason="this interpreter cannot be run again"
)
def test_caddy_outlives_the_process_that_started_it(
    make_lb: Callable[..., LoadBalancer], replicas: Callable[..., Replica]
) -> None:
    a = replicas("a")
    lb = make_lb([a.port])
    args = json.dumps([str(lb.home), lb.listen_port, lb.slot_ports, FAST])
    script = (
        "import json, sys\n"
        "from pipelines.targets.local.loadbalancer import LoadBalancer\n"
        "home, port, slots, kw = json.loads(sys.argv[1])\n"
        "print(LoadBalancer(home, port, slots, '/ready', **kw).start())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, args], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.strip() == "True"
    assert lb.pid() is not None  # the starter has exited; caddy has not
    assert bodies(lb, 3) == ["a", "a", "a"]
    assert lb.start() is False


def listening_addresses(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # health-check connections come and go
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    found = set()
    for table, listen_state in (("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07")):
        for row in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            cols = row.split()
            if cols[9] in inodes and cols[3] == listen_state:
                host, port = cols[1].rsplit(":", 1)
                ip = socket.inet_ntop(
                    socket.AF_INET if len(host) == 8 else socket.AF_INET6,
                    bytes.fromhex(host)[::-1] if len(host) == 8 else bytes.fromhex(host),
                )
                found.add(f"{table}:{ip}:{int(port, 16)}")
    return found


def test_admin_is_a_unix_socket_and_the_only_tcp_listener_is_the_lb(
    make_lb: Callable[..., LoadBalancer], replicas: Callable[..., Replica]
) -> None:
    lb = make_lb([replicas("a").port])
    lb.start()
    pid = lb.pid()
    assert pid is not None
    assert listening_addresses(pid) == {f"tcp:127.0.0.1:{lb.listen_port}"}
    assert lb.admin_socket.is_socket()
    assert oct(lb.home.stat().st_mode & 0o777) == "0o700"
    with pytest.raises(httpx.ConnectError):
        httpx.get("http://127.0.0.1:2019/config/", timeout=1)


def test_access_log_and_metrics(
    make_lb: Callable[..., LoadBalancer], replicas: Callable[..., Replica]
) -> None:
    lb = make_lb([replicas("a").port])
    lb.start()
    bodies(lb, 5)
    wait_for(lambda: lb.access_log.exists() and len(lb.access_log.read_text().splitlines()) >= 5)
    entry = json.loads(lb.access_log.read_text().splitlines()[-1])
    assert entry["status"] == 200
    assert entry["request"]["uri"] == "/work"
    metrics = lb.metrics()
    assert 'caddy_http_requests_total{handler="reverse_proxy",server="lb"} 5' in metrics
    assert "caddy_reverse_proxy_upstreams_healthy" in metrics


def test_stale_pid_files_are_detected_and_cleaned(
    make_lb: Callable[..., LoadBalancer], replicas: Callable[..., Replica]
) -> None:
    lb = make_lb([replicas("a").port])
    lb.home.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    for stale in (str(dead.pid), str(os.getpid()), "garbage"):  # dead, reused, unreadable
        lb.pid_file.write_text(stale)
        assert lb.is_running() is False
        assert not lb.pid_file.exists()
    lb.pid_file.write_text(str(dead.pid))
    assert lb.start() is True
    assert lb.is_running()


def test_port_in_use_names_the_port_and_its_owner(
    make_lb: Callable[..., LoadBalancer], replicas: Callable[..., Replica]
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", free_port()))
        squatter.listen()
        port = squatter.getsockname()[1]
        lb = make_lb([replicas("a").port], listen_port=port)
        with pytest.raises(LoadBalancerError) as exc:
            lb.start()
    message = str(exc.value)
    assert f"127.0.0.1:{port} is already in use by pid {os.getpid()}" in message
    assert not lb.is_running()


def test_a_port_left_in_time_wait_by_a_stopped_listener_is_free(
    make_lb: Callable[..., LoadBalancer], replicas: Callable[..., Replica]
) -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Caddy's (Go) are
        listener.bind(("127.0.0.1", free_port()))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()  # the side that closes first holds TIME_WAIT on `port`
        client.close()
    with socket.socket() as plain, pytest.raises(OSError, match="in use"):
        plain.bind(("127.0.0.1", port))  # what a probe without SO_REUSEADDR would see
    lb = make_lb([replicas("a").port], listen_port=port)
    assert lb.start() is True
    assert set(bodies(lb, 5)) == {"a"}


def test_stop_leaves_nothing_running(
    make_lb: Callable[..., LoadBalancer], replicas: Callable[..., Replica]
) -> None:
    lb = make_lb([replicas("a").port])
    lb.start()
    pid = lb.pid()
    assert pid is not None
    lb.stop()
    assert not Path(f"/proc/{pid}").exists()
    assert not lb.is_running()
    assert not lb.admin_socket.exists()
    assert not lb.pid_file.exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(lb.url, timeout=1)
    lb.stop()  # stopping a stopped load balancer is fine


def test_overlong_socket_path_is_refused(replicas: Callable[..., Replica]) -> None:
    lb = LoadBalancer(Path("/tmp") / ("x" * 120), free_port(), [replicas("a").port])
    with pytest.raises(LoadBalancerError, match="longer than 107 bytes"):
        lb.start()


def test_canary_shares_move_per_request_without_a_reload_and_fail_nothing(
    replicas: Callable[..., Replica],
) -> None:
    from pipelines.targets.local.loadbalancer import share_of, share_patterns

    a, b = replicas("a"), replicas("b")
    canary, baseline = replicas("canary"), replicas("baseline")
    root = Path(tempfile.mkdtemp(prefix="lb-", dir="/tmp"))
    lb = LoadBalancer(
        root / "lb",
        free_port(),
        [a.port, b.port],
        "/ready",
        canary_port=canary.port,
        baseline_port=baseline.port,
        **FAST,
    )
    try:
        lb.start()
        for port in (canary.port, baseline.port):
            wait_for(lambda port=port: lb.port_healthy(port), what=f"port {port} healthy")
        with httpx.Client(base_url=lb.url, timeout=5) as client:
            assert {client.get("/work").text for _ in range(40)} == {"a", "b"}  # no share yet
            served: dict[float, dict[str, int]] = {}
            failures = []
            for percent in (10, 50, 100, 0):
                assert lb.set_canary_share(percent) == share_of(share_patterns(percent)[0])
                counts = {"a": 0, "b": 0, "canary": 0, "baseline": 0}
                for _ in range(400):
                    response = client.get("/work")
                    if response.status_code != 200:
                        failures.append(response.status_code)
                    counts[response.text] += 1
                served[percent] = counts
        assert failures == []
        for side in ("canary", "baseline"):  # 10.2 % of 400 is 41, 50 % is 200
            assert 15 <= served[10][side] <= 70
            assert 150 <= served[50][side] <= 250
        assert served[50]["a"] + served[50]["b"] == 0
        assert served[100] == {"a": 0, "b": 0, "canary": 400, "baseline": 0}
        assert served[0]["canary"] + served[0]["baseline"] == 0
        # The shares moved with no config load: Caddy logged one "load" only.
        caddy_log = (lb.home / "caddy.log").read_text()
        assert caddy_log.count('"msg":"load complete"') == 1
        # Every request's log entry names the port that served it.
        entries = [json.loads(line) for line in lb.access_log.read_text().splitlines()]
        ports = {str(e.get("upstream_port")) for e in entries}
        assert ports == {str(r.port) for r in (a, b, canary, baseline)}
        # A canary that stops answering sends its share back to the stable slots.
        lb.set_canary_share(100)
        canary.stop()
        with httpx.Client(base_url=lb.url, timeout=5) as client:
            after = [client.get("/work") for _ in range(50)]
        assert {r.status_code for r in after} == {200}
        assert {r.text for r in after} <= {"a", "b"}
    finally:
        lb.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_share_patterns_cover_the_share_they_name_and_never_overlap() -> None:
    import re

    from pipelines.targets.local.loadbalancer import share_of, share_patterns

    for percent in (0, 1, 10, 25, 33, 50, 60, 90, 99, 100):
        canary, baseline = share_patterns(percent)
        assert abs(share_of(canary) - percent) <= 100 / 512
        assert share_of(baseline) == min(share_of(canary), 100 - share_of(canary))
        both = (
            [bool(p) and bool(re.match(p, f"{i:02x}")) for i in range(256) for p in (canary,)],
            [bool(baseline) and bool(re.match(baseline, f"{i:02x}")) for i in range(256)],
        )
        assert not any(c and b for c, b in zip(*both, strict=True))
