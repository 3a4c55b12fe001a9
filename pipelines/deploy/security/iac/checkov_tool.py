"""checkov in a virtualenv of its own, under the user's cache directory.

checkov pins its dependencies exactly (boto3 to one release, packaging and networkx to old
majors), so installing it beside the project's would move boto3 back a year for the aws
target and its tests, and again at every checkov upgrade. It gets its own venv instead,
made on first use from the requirement in pyproject.toml (`iac-scan`, which `drydock[dev]`
does not include) and reused while that requirement is unchanged. Making it needs only
PyPI; running it needs no network (`--skip-download`, no update check).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
EXTRA = "iac-scan"  # the optional-dependencies group in pyproject.toml
OVERRIDE_ENV = "DRYDOCK_CHECKOV"  # a checkov executable to use instead of the cached venv
READY = ".drydock-ready"  # written last: a venv without it is a broken install, made again
INSTALL_TIMEOUT_S = 1200
RUN_TIMEOUT_S = 900
# No call home: no guideline download from the Prisma Cloud API, no PyPI version check.
QUIET_ENV = {"BC_SKIP_MAPPING": "TRUE", "SKIP_PACKAGE_UPDATE_CHECK": "true", "LOG_LEVEL": "ERROR"}

Runner = Callable[..., subprocess.CompletedProcess[str]]


class CheckovError(RuntimeError):
    """checkov could not be installed or run; the message says what to do."""


def requirements(root: Path = ROOT) -> list[str]:
    pyproject = root / "pyproject.toml"
    document = tomllib.loads(pyproject.read_text())
    extras = document.get("project", {}).get("optional-dependencies", {})
    wanted = extras.get(EXTRA)
    if not wanted:
        raise CheckovError(
            f"{pyproject}: no [project.optional-dependencies] {EXTRA} list; it names the "
            "checkov release the infra scan installs (e.g. checkov==3.3.30)"
        )
    return [str(r) for r in wanted]


def cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "drydock"


def venv_dir(wanted: Sequence[str]) -> Path:
    """One venv per requirement list and base interpreter, shared by every checkout."""
    version = f"py{sys.version_info.major}{sys.version_info.minor}"
    digest = hashlib.sha256("\n".join([sys.base_prefix, *wanted]).encode()).hexdigest()[:12]
    return cache_home() / f"checkov-{version}-{digest}"


def executable(root: Path = ROOT, runner: Runner = subprocess.run) -> Path:
    """The checkov to run: `$DRYDOCK_CHECKOV`, else the cached venv's, installed if needed."""
    override = os.environ.get(OVERRIDE_ENV)
    if override:
        path = Path(override)
        if not path.is_file():
            raise CheckovError(f"{OVERRIDE_ENV}={override}: no such file; unset it or fix it")
        return path
    wanted = requirements(root)
    home = venv_dir(wanted)
    binary = home / "bin" / "checkov"
    if (home / READY).exists() and binary.exists():
        return binary
    home.parent.mkdir(parents=True, exist_ok=True)
    # Two processes (a deploy's step 2 beside the test suite) may both find no venv.
    with open(home.parent / f"{home.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (home / READY).exists():
            _install(home, wanted, runner)
    return binary


def _install(home: Path, wanted: Sequence[str], runner: Runner) -> None:
    print(f"infra.scan: installing {' '.join(wanted)} into {home} (once)", flush=True)
    shutil.rmtree(home, ignore_errors=True)
    steps = (
        [sys.executable, "-m", "venv", str(home)],
        [str(home / "bin" / "python"), "-m", "pip", "install", "-q", "--upgrade", "pip"],
        [str(home / "bin" / "python"), "-m", "pip", "install", "-q", *wanted],
    )
    for argv in steps:
        try:
            proc = runner(
                argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CheckovError(f"installing checkov: `{' '.join(argv)}` failed: {exc}") from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout or "").strip()[-1500:]
            raise CheckovError(
                f"installing checkov: `{' '.join(argv)}` exited {proc.returncode}:\n{tail}\n"
                f"It needs PyPI; or point {OVERRIDE_ENV} at an installed checkov."
            )
    (home / READY).write_text("\n".join(wanted) + "\n")


def version(binary: Path, runner: Runner = subprocess.run) -> str:
    proc = runner(
        [str(binary), "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **QUIET_ENV},
    )
    return proc.stdout.strip() or "unknown"


def run(binary: Path, plan_file: Path, runner: Runner = subprocess.run) -> str:
    """checkov's JSON report on one plan file. Its exit status is 1 when a check failed,
    so the JSON, not the status, says how it went."""
    argv = [str(binary), "--framework", "terraform_plan", "-f", str(plan_file)]
    argv += ["-o", "json", "--skip-download", "--compact"]
    try:
        proc = runner(
            argv,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
            env={**os.environ, **QUIET_ENV},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CheckovError(f"`{' '.join(argv)}` failed: {exc}") from None
    if proc.returncode not in (0, 1) or not proc.stdout.strip().startswith(("{", "[")):
        tail = (proc.stderr or proc.stdout or "").strip()[-1500:]
        raise CheckovError(f"`{' '.join(argv)}` exited {proc.returncode}:\n{tail}")
    return proc.stdout


# Run by checkov's own interpreter: every Terraform resource type one of its checks names.
_KNOWN_TYPES = """
import json
from checkov.common.checks_infra.registry import get_graph_checks_registry
from checkov.terraform.checks.resource.registry import resource_registry
known = set(resource_registry.checks) | set(resource_registry.wildcard_checks)
graph = get_graph_checks_registry("terraform")
graph.load_checks()
for check in graph.checks:
    known |= set(check.resource_types or [])
print(json.dumps(sorted(known)))
"""


def known_types(binary: Path, runner: Runner = subprocess.run) -> set[str]:
    """The resource types checkov has at least one check for. A planned resource of any
    other type is checked by nothing, which the scan reports."""
    python = binary.parent / "python"
    proc = runner(
        [str(python), "-c", _KNOWN_TYPES],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
        env={**os.environ, **QUIET_ENV},
    )
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip()[-1000:]
        raise CheckovError(f"listing checkov's resource types with {python} failed:\n{tail}")
    return set(json.loads(proc.stdout))
