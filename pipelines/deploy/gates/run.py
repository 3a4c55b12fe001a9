"""Run the gates concurrently: every gate without `after` starts at once, a gate with one
starts when that one has passed. Each writes to its own log under reports/gates/logs/.

While they run, the terminal shows either one gate's own output (`stream`, what `invoke
test` does with pytest) or a progress line with the test count done/total and the elapsed
time. The first failure stops the gates still running, unless `keep_going`. A run past its
deadline has every process asked for its threads' stacks (SIGUSR1, see tests/conftest.py),
then ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pipelines.deploy.gates import progress
from pipelines.deploy.gates.commands import LOGS, STACKS, Gate

DEADLINE_ENV = "DRYDOCK_GATES_DEADLINE_S"
DEFAULT_DEADLINE_S = 3600.0
STOP_GRACE_S = 20.0  # SIGINT lets pytest tear its fixtures down (clusters, environments)
TAIL_LINES = 60
Echo = Callable[[str], None]


def say(line: str) -> None:
    """Print at once: in a CI log stdout is a pipe, and a buffered progress line is late."""
    print(line, flush=True)


@dataclass(frozen=True)
class GateResult:
    name: str
    command: str
    exit_status: int | None  # None: not run, or stopped before it ended
    duration_s: float
    started: str
    finished: str
    passed: bool = False
    note: str = ""  # why it did not run, or how it was stopped
    log: str = ""

    @property
    def ok(self) -> bool:
        return self.passed


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@dataclass
class _Running:
    gate: Gate
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    started: str
    clock: float
    tee: threading.Thread | None = None


def _tee(source: IO[bytes], log: IO[bytes], out: IO[bytes], muted: threading.Event) -> None:
    """Copy a gate's output to its log and, until the run is stopping, to the terminal."""
    for chunk in iter(lambda: source.read1(65536), b""):  # type: ignore[attr-defined]
        log.write(chunk)
        if not muted.is_set():
            out.write(chunk)
            out.flush()


@contextlib.contextmanager
def _children_take_sigint() -> Iterator[None]:
    """A shell starts a background job (`cmd &`, nohup) with SIGINT ignored, and a child
    inherits that. Stopped with SIGINT, a gate's pytest would then go on running, and be
    killed 20 s later without tearing anything down, its clusters and replicas (each in a
    session of its own) left running. A handler, unlike an ignored signal, does not pass
    through exec: with a handler that does nothing, the runner still ignores SIGINT, and
    its gates start with the default."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    ):
        yield
        return
    signal.signal(signal.SIGINT, _ignore)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _ignore(signum: int, frame: object) -> None:
    pass


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


class GateRun:
    def __init__(
        self,
        gates: Sequence[Gate],
        root: Path,
        keep_going: bool = False,
        echo: Echo = say,
        stream: str | None = None,
        deadline_s: float | None = None,
        progress_every_s: float | None = None,
    ) -> None:
        self.gates = list(gates)
        _check_order(self.gates)
        self.root = root
        self.keep_going = keep_going
        self.echo = echo
        self.stream = stream
        self.deadline_s = deadline_s or float(os.environ.get(DEADLINE_ENV, DEFAULT_DEADLINE_S))
        self.results: dict[str, GateResult] = {}
        self.running: dict[str, _Running] = {}
        self.clock = time.monotonic()
        self.tty = sys.stdout.isatty()
        # In place on a terminal; a line now and then in a CI log.
        self.progress_every_s = progress_every_s or (1.0 if self.tty else 15.0)
        self._shown = 0.0
        self.stopping = ""
        self._muted = threading.Event()  # a stopped gate's last words go to its log only

    # ---------------------------------------------------------------- lifecycle

    def run(self) -> list[GateResult]:
        (self.root / LOGS).mkdir(parents=True, exist_ok=True)
        for gate in self.gates:  # a pass that does not run this time must not count
            if gate.progress is not None:
                (self.root / gate.progress).unlink(missing_ok=True)
        shutil.rmtree(self.root / STACKS, ignore_errors=True)
        with _children_take_sigint():
            return self._run()

    def _run(self) -> list[GateResult]:
        try:
            while len(self.results) < len(self.gates):
                self._start_ready()
                self._reap()
                if time.monotonic() - self.clock > self.deadline_s and not self.stopping:
                    self._stop_all(f"the gates ran past their deadline of {self.deadline_s:.0f} s")
                self._show_progress()
                time.sleep(0.1)
        except KeyboardInterrupt:
            self._stop_all("interrupted")
            self._reap()
            raise
        finally:
            self._clear_line()
        return [self.results[g.name] for g in self.gates]

    def _start_ready(self) -> None:
        for gate in self.gates:
            if gate.name in self.results or gate.name in self.running:
                continue
            if self.stopping:
                self._skip(gate, self.stopping)
                continue
            if gate.after is None:
                self._start(gate)
                continue
            before = self.results.get(gate.after)
            if before is None:
                continue
            if before.ok:
                self._start(gate)
            else:
                self._skip(gate, f"{gate.after} did not pass")

    def _start(self, gate: Gate) -> None:
        log_path = self.root / LOGS / f"{gate.name}.log"
        log = log_path.open("wb")
        env = {**os.environ, **gate.env}
        streamed = gate.name == self.stream
        if streamed and self.tty:
            env.setdefault("PY_COLORS", "1")
        process = subprocess.Popen(
            gate.argv,
            cwd=self.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if streamed else log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
        )
        running = _Running(gate, process, log, _now(), time.monotonic())
        if streamed:
            assert process.stdout is not None
            self._clear_line()
            self.echo(f"$ {gate.command}")
            running.tee = threading.Thread(
                target=_tee, args=(process.stdout, log, sys.stdout.buffer, self._muted), daemon=True
            )
            running.tee.start()
        self.running[gate.name] = running

    def _skip(self, gate: Gate, why: str) -> None:
        self.results[gate.name] = GateResult(gate.name, gate.command, None, 0.0, "", "", note=why)

    def _reap(self) -> None:
        for name, running in list(self.running.items()):
            status = running.process.poll()
            if status is None:
                continue
            if running.tee is not None:
                running.tee.join(timeout=10)
            running.log.close()
            del self.running[name]
            gate = running.gate
            passed = status in gate.ok_statuses and not (self.stopping and status != 0)
            note = self.stopping if self.stopping and status != 0 else ""
            result = GateResult(
                gate.name,
                gate.command,
                status,
                round(time.monotonic() - running.clock, 3),
                running.started,
                _now(),
                passed=passed,
                note=note,
                log=str(LOGS / f"{gate.name}.log"),
            )
            self.results[name] = result
            self._report(result)
            if not passed and not self.keep_going and not self.stopping:
                self._stop_all(f"stopped: {gate.name} failed")

    def _stop_all(self, why: str) -> None:
        """Ask every running gate for its stacks if it is past the deadline, then SIGINT
        (pytest tears its fixtures down), then SIGKILL what is left."""
        self.stopping = why
        self._muted.set()
        if not self.running:
            return
        self._clear_line()
        self.echo(f"gates: {why}; stopping {', '.join(self.running)}")
        if "deadline" in why:
            for running in self.running.values():
                _signal_group(running.process, signal.SIGUSR1)
            time.sleep(3)
            self._show_stacks()
        for running in self.running.values():
            _signal_group(running.process, signal.SIGINT)
        until = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < until and any(
            r.process.poll() is None for r in self.running.values()
        ):
            time.sleep(0.2)
        for running in self.running.values():
            if running.process.poll() is None:
                _signal_group(running.process, signal.SIGKILL)
                running.process.wait()

    # ---------------------------------------------------------------- display

    def _show_stacks(self) -> None:
        for path in sorted((self.root / STACKS).rglob("*.txt")):
            text = path.read_text(errors="replace").strip()
            if text:
                self.echo(f"--- stacks of {path.relative_to(self.root)} ---\n{text}")

    def _report(self, result: GateResult) -> None:
        streamed = result.name == self.stream
        if result.ok and streamed:
            return
        self._clear_line()
        mark = "ok  " if result.ok else "stop" if result.note else "FAIL"
        status = "" if result.ok or result.note else f" (exit {result.exit_status})"
        self.echo(f"  {mark} {result.name:<14} {result.duration_s:7.1f} s{status}")
        if not result.ok and not streamed and not result.note:
            self.echo(self._tail(result))

    def _tail(self, result: GateResult) -> str:
        lines = (self.root / result.log).read_text(errors="replace").splitlines()
        shown = lines[-TAIL_LINES:]
        head = f"       ... {len(lines) - len(shown)} earlier lines in {result.log}\n" * (
            len(lines) > len(shown)
        )
        return head + "\n".join(f"       {line}" for line in shown)

    def progress_line(self) -> str:
        parts = []
        for gate in self.gates:
            if gate.progress is not None and gate.name in self.running:
                seen = progress.read(self.root / gate.progress)
                if seen and seen.get("total"):
                    failed = len(seen.get("failed", []))
                    count = f"{seen['done']}/{seen['total']}"
                    parts.append(f"{gate.name} {count}" + (f", {failed} failed" if failed else ""))
                else:
                    parts.append(f"{gate.name} collecting")
            elif gate.name in self.running:
                parts.append(f"{gate.name} running")
        done = [r for r in self.results.values() if r.exit_status is not None]
        if done:
            parts.append(
                "done: " + " ".join(f"{r.name} {'ok' if r.ok else 'FAILED'}" for r in done)
            )
        return f"  gates {_elapsed(time.monotonic() - self.clock)}: " + "; ".join(parts)

    def _show_progress(self) -> None:
        if self.stream is not None and self.stream in self.running:
            return  # the streamed gate's own output shows that it moves
        if not self.running:
            return
        if time.monotonic() - self._shown < self.progress_every_s:
            return
        self._shown = time.monotonic()
        line = self.progress_line()
        if self.tty:
            sys.stdout.write("\r\033[K" + line[: os.get_terminal_size().columns - 1])
            sys.stdout.flush()
        else:
            self.echo(line)

    def _clear_line(self) -> None:
        if self.tty and self.stream not in self.running:
            sys.stdout.write("\r\033[K")
            sys.stdout.flush()


def _check_order(gates: Sequence[Gate]) -> None:
    """A gate waiting for one that is not in the run, or comes after it, would wait forever."""
    seen: set[str] = set()
    for gate in gates:
        if gate.name in seen:
            raise ValueError(f"two gates are named {gate.name!r}")
        if gate.after is not None and gate.after not in seen:
            raise ValueError(
                f"gate {gate.name!r} runs after {gate.after!r}, which is not a gate before it"
            )
        seen.add(gate.name)


def run_gates(
    gates: Sequence[Gate],
    root: Path,
    keep_going: bool = False,
    echo: Echo = say,
    stream: str | None = None,
    deadline_s: float | None = None,
    progress_every_s: float | None = None,
) -> list[GateResult]:
    return GateRun(gates, root, keep_going, echo, stream, deadline_s, progress_every_s).run()
