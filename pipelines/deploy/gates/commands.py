"""The gate commands behind `invoke test`, `invoke check` and deploy step 1.

Ruff, ruff format and mypy start at once, beside the tests. The tests run in two passes on
one coverage file: every test not marked `serial` spread over the cores by pytest-xdist,
then the `serial` ones alone; the coverage report and its threshold come after both.

Without `e2e` the tests marked `e2e` are left out: a local deploy's step 1 runs that way
(record.py says what each kind of record is enough for).
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.host.ports import PORT_RANGE_ENV, pipeline_and_tests_ranges, user_range_set

ROOT = Path(__file__).resolve().parents[3]
REPORTS = Path("reports")
LOGS = REPORTS / "gates" / "logs"
COVERAGE_JSON = REPORTS / "coverage.json"
COVERAGE_XML = REPORTS / "coverage.xml"
FORMATTED = ("service", "pipelines", "infra", "tasks.py", "tests")
# pytest's exit status when a selection matched no test: a pass that has nothing to run.
NO_TESTS = 5
SERIAL_MARK = "mark.serial"  # as written in a test file: @pytest.mark.serial, pytestmark
WORKERS_ENV = "DRYDOCK_TEST_WORKERS"  # pytest-xdist's -n; "auto": workers_for_cores()
PROGRESS_ENV = "DRYDOCK_TEST_PROGRESS"  # where pipelines.deploy.gates.progress writes
STACKS_ENV = "DRYDOCK_STACKS_DIR"  # where a hung test's process leaves its stacks
STACKS = LOGS / "stacks"
PROGRESS_PLUGIN = "pipelines.deploy.gates.progress"
COVERAGE_MODULE = "pipelines.deploy.gates.coverage_report"
NOT_E2E = "not e2e"  # the marker expression of a run without the end-to-end tests


@dataclass(frozen=True)
class Gate:
    name: str
    argv: tuple[str, ...]
    after: str | None = None  # runs once this gate has passed; not at all if it failed
    ok_statuses: tuple[int, ...] = (0,)
    env: Mapping[str, str] = field(default_factory=dict)
    progress: Path | None = None  # a pytest pass's progress file, relative to the root

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


def usable_cores() -> int:
    """The cores this process may run on (an affinity mask counts)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def workers_for_cores(cores: int) -> int:
    """A worker per core and one more.

    The suite waits for much of its time: on PostgreSQL, subprocesses and sockets, and in
    the end-to-end tests on detection and recovery windows. With a worker per core, a core
    sits idle whenever every worker waits. On two cores (docs/BENCHMARKS.md): without the
    end-to-end tests, two workers kept 1.57 to 1.76 cores busy and three kept 1.94 (180 s
    against 198 to 207 s); with them, spread by group, two kept 1.65 (540 s) and three kept
    1.91 (448 s, every test passing)."""
    return cores + 1


def workers(environ: Mapping[str, str] = os.environ) -> str:
    value = environ.get(WORKERS_ENV, "auto").strip() or "auto"
    if value == "auto":
        return str(workers_for_cores(usable_cores()))
    if not value.isdigit():
        raise ValueError(f"{WORKERS_ENV}={value!r}: use a number of workers or 'auto'")
    return value


def _narrowed(markers: str, clause: str) -> str:
    """The marker expression `markers` (none: every test) narrowed by `clause`."""
    return f"({markers}) and {clause}" if markers else clause


def _tests_env(progress: Path, name: str) -> dict[str, str]:
    env = {PROGRESS_ENV: str(progress), STACKS_ENV: str(STACKS / name)}
    if not user_range_set():
        # Disjoint from the ports a deploy's steps 2-4 draw while the tests run beside them.
        low, high = pipeline_and_tests_ranges()[1]
        env[PORT_RANGE_ENV] = f"{low}-{high}"
    return env


def serial_test_files(root: Path = ROOT) -> list[str]:
    """The test files that mark tests `serial`. The serial pass collects only these, and
    none at all when there are none: collecting the whole suite costs about ten seconds.
    tests/serial_marks.py refuses a test marked `serial` in any other file."""
    return sorted(
        path.relative_to(root).as_posix()
        for path in (root / "tests").rglob("test_*.py")
        if SERIAL_MARK in path.read_text()
    )


def suite_passes(
    k: str = "",
    markers: str = "",
    python: str = sys.executable,
    workers_n: str | None = None,
    serial_files: Sequence[str] | None = None,
    by_group: bool = False,
) -> list[Gate]:
    """The parallel pass and, when any test is marked `serial`, the serial pass after it,
    both appending to one coverage data file. `by_group`: the parallel pass spreads the
    tests by the groups of tests/worker_groups.py, in the order they were collected, so
    the two end-to-end groups (tests/e2e/ comes first) start first; xdist would otherwise
    start with the groups that hold the most tests."""
    select = ["-k", k] if k else []
    spread = ("--dist", "loadgroup", "--no-loadscope-reorder") if by_group else ()
    serial_files = serial_test_files() if serial_files is None else serial_files
    common = ("-m", "pytest", "-p", PROGRESS_PLUGIN, "--cov", "--cov-report=")
    parallel_progress = LOGS / "pytest.progress.json"
    serial_progress = LOGS / "pytest-serial.progress.json"
    parallel = Gate(
        "pytest",
        (
            python,
            *common,
            "-n",
            workers_n or workers(),
            *spread,
            "-m",
            _narrowed(markers, "not serial"),
            *select,
        ),
        ok_statuses=(0, NO_TESTS),
        env=_tests_env(parallel_progress, "pytest"),
        progress=parallel_progress,
    )
    if not serial_files:
        return [parallel]
    only_serial = _narrowed(markers, "serial")
    serial = Gate(
        "pytest-serial",
        (python, *common, "--cov-append", "-m", only_serial, *select, *serial_files),
        after="pytest",
        ok_statuses=(0, NO_TESTS),
        env=_tests_env(serial_progress, "pytest-serial"),
        progress=serial_progress,
    )
    return [parallel, serial]


def quality_gates(
    coverage: int = 90,
    k: str = "",
    markers: str = "",
    python: str = sys.executable,
    workers_n: str | None = None,
    serial_files: Sequence[str] | None = None,
    e2e: bool = True,
) -> list[Gate]:
    """Every gate. The coverage threshold applies to the whole suite, with or without the
    end-to-end tests (they add nothing to it: docs/BENCHMARKS.md), and not to a selection
    (-k, -m), which covers less by design."""
    threshold = [] if (k or markers) else ["--fail-under", str(coverage)]
    selected = markers if e2e else _narrowed(markers, NOT_E2E)
    # With the end-to-end tests, by group: chunks of the collection sent them all to one worker.
    passes = suite_passes(k, selected, python, workers_n, serial_files, by_group=e2e)
    return [
        Gate("ruff-check", (python, "-m", "ruff", "check", ".")),
        Gate("ruff-format", (python, "-m", "ruff", "format", "--check", *FORMATTED)),
        Gate("mypy", (python, "-m", "mypy")),
        *passes,
        Gate("coverage", (python, "-m", COVERAGE_MODULE, *threshold), after=passes[-1].name),
    ]
