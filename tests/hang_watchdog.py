"""A hung test ends its run with the stacks of its threads, under pytest-xdist too.

pytest-timeout's thread method prints the stacks on the worker's terminal writer, which an
xdist worker does not forward, so the controller would only say "node down". Here a worker's
timer is faulthandler's own C-level watchdog instead (it also fires when a C extension holds
the GIL): it writes every thread's stack to a file of that worker's and ends the process.
The controller prints the file when it sees the worker go down. SIGUSR1, which the gate runner
sends to every process of a run past its deadline, writes to the same files.
"""

from __future__ import annotations

import faulthandler
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import IO, Any

import pytest

from pipelines.deploy.gates.commands import STACKS_ENV

_handles: list[IO[str]] = []
_made: list[Path] = []  # a directory this process created, and so removes at the end


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "")


def stacks_file(directory: Path, worker: str) -> Path:
    return directory / f"{worker or 'main'}-{os.getpid()}.txt"


def pytest_configure(config: pytest.Config) -> None:
    if not os.environ.get(STACKS_ENV):
        # Set before the workers start, so they inherit it.
        os.environ[STACKS_ENV] = tempfile.mkdtemp(prefix="drydock-stacks-")
        _made.append(Path(os.environ[STACKS_ENV]))
    directory = Path(os.environ[STACKS_ENV])
    directory.mkdir(parents=True, exist_ok=True)
    handle = stacks_file(directory, _worker()).open("w")
    _handles.append(handle)
    faulthandler.register(signal.SIGUSR1, file=handle, all_threads=True)


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    if not (_worker() and settings.timeout and _handles):
        return None  # pytest-timeout's own timer: its stacks reach the terminal here
    faulthandler.dump_traceback_later(settings.timeout, exit=True, file=_handles[0])
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> bool | None:
    if not _worker():
        return None
    faulthandler.cancel_dump_traceback_later()
    return True


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """On the controller: a worker that went down with an error may have left its stacks."""
    if not error:
        return
    worker = getattr(getattr(node, "gateway", None), "id", "")
    reporter = node.config.pluginmanager.get_plugin("terminalreporter")
    for path in sorted(Path(os.environ[STACKS_ENV]).glob(f"{worker}-*.txt")):
        text = path.read_text(errors="replace").strip()
        if text and reporter is not None:
            reporter.write_sep("=", f"{worker} went down; the stacks it wrote ({path})")
            reporter.write_line(text)


def pytest_unconfigure(config: pytest.Config) -> None:
    faulthandler.unregister(signal.SIGUSR1)
    for handle in _handles:
        handle.close()
    for directory in _made:
        shutil.rmtree(directory, ignore_errors=True)
