#!/usr/bin/env python3
"""Bootstrap and run: `python3 dev.py <invoke task> [args]`.

Creates `.venv` on first use, reinstalls when pyproject.toml changes, then hands
the arguments to invoke inside that environment. Needs only python3 and pip.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("DRYDOCK_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".drydock-installed"


def _wanted_stamp() -> str:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    return f"{digest} {sys.version_info[:2]}"


def ensure_environment() -> None:
    if not (BIN / "python").exists():
        print(f"dev.py: creating virtualenv in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if STAMP.exists() and STAMP.read_text() == _wanted_stamp():
        return
    print("dev.py: installing drydock[dev] (first run, or pyproject.toml changed)", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "-e", f"{ROOT}[dev]"], check=True, cwd=ROOT)
    STAMP.write_text(_wanted_stamp())


def main(argv: list[str]) -> int:
    if not argv:
        argv = ["--list"]
    try:
        ensure_environment()
    except subprocess.CalledProcessError as exc:
        print(f"dev.py: installing dependencies failed ({exc}); fix the error above and rerun.")
        return 2
    os.chdir(ROOT)
    os.execv(str(BIN / "invoke"), [str(BIN / "invoke"), *argv])  # noqa: S606 - replaces this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
