"""Debian's headless Chromium, driven from its command line: the DOM after the page's scripts
ran (`--dump-dom`), and a screenshot. Enough to see that plotly drew the charts; no browser
download, no driver package."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from html import unescape
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
# Scripts run in virtual time: the page is "done" once plotly has drawn, not after a sleep.
BUDGET_MS = "10000"


def executable() -> str | None:
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


def why_missing() -> str:
    return (
        "no Chromium on PATH (looked for " + ", ".join(CANDIDATES) + "); "
        "install Debian's `chromium` (apt-get install chromium) to run the browser tests"
    )


def _run(page: Path, *args: str) -> str:
    browser = executable()
    assert browser is not None, why_missing()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        flags = [
            "--headless",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={BUDGET_MS}",
        ]
        if os.geteuid() == 0:  # CI runs as root, where Chromium's sandbox cannot start
            flags.append("--no-sandbox")
        done = subprocess.run(
            [browser, *flags, *args, page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, f"chromium exited {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout


def dump_dom(page: Path) -> str:
    return _run(page, "--dump-dom")


def screenshot(page: Path, out: Path, width: int = 1280, height: int = 2200) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    _run(page, f"--screenshot={out.resolve()}", f"--window-size={width},{height}")
    assert out.exists() and out.stat().st_size > 10_000, f"no screenshot at {out}"
    return out


def _texts(dom: str, css_class: str) -> list[str]:
    pattern = rf'class="{css_class}"[^>]*data-unformatted="([^"]*)"'
    return [unescape(m) for m in re.findall(pattern, dom)]


def legend(dom: str) -> list[str]:
    """The series names in every rendered legend, in order."""
    return _texts(dom, "legendtext")


def annotations(dom: str) -> list[str]:
    return _texts(dom, "annotation-text")


def charts(dom: str) -> int:
    """How many plotly charts drew their main SVG."""
    return len(re.findall(r'class="plot-container plotly"', dom))
