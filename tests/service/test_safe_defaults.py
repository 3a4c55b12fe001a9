"""Safe defaults: ENV unset is development only in a development checkout; staging and
production refuse the development key and any secret written in the project's source."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.host.ports import free_port
from service.settings import DEV_JWT_SECRET, SettingsError, load_settings
from service.source_tree import PACKAGE_DIR, development_checkout, found_in_source
from tests.service.settings_env import PRODUCTION, clear_service_env, previous_key

pytestmark = pytest.mark.unit

REPOSITORY = PACKAGE_DIR.parent
# Strong enough, but written in this file, which git tracks: no secret.
WRITTEN_HERE = "a-strong-looking-key-committed-to-the-repository-0123456789"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_service_env(monkeypatch)


def release_copy(tmp_path: Path) -> Path:
    """The service package alone, as a release artifact or an image holds it."""
    shutil.copytree(PACKAGE_DIR, tmp_path / "service", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def run_from(root: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python <args>` importing the service from `root` (ahead of the editable install)."""
    clean = {k: v for k, v in os.environ.items() if k not in {"ENV", "JWT_SECRET"}}
    return subprocess.run(
        [sys.executable, *args],
        env={**clean, "PYTHONPATH": str(root), **env},
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- ENV unset -------------------------------------------------------------------------


def test_unset_env_outside_a_development_checkout_refuses_to_start(tmp_path: Path) -> None:
    release = release_copy(tmp_path)
    result = run_from(release, ["-m", "service", "serve", "--port", str(free_port())], {})
    assert result.returncode == 2, result.stderr
    assert "refusing to start: " in result.stderr
    assert "ENV is not set" in result.stderr
    assert str(release / "service") in result.stderr, "says where it looked"
    assert "set ENV to one of development, test, staging, production" in result.stderr


def test_unset_env_in_this_checkout_is_development() -> None:
    assert development_checkout() == REPOSITORY
    settings = load_settings()
    assert settings.env == "development"
    assert settings.jwt_secret == DEV_JWT_SECRET


@pytest.mark.parametrize(
    ("git", "pyproject", "expected"),
    [
        (True, '[project]\nname = "drydock"\n', True),
        (False, '[project]\nname = "drydock"\n', False),  # an unpacked source tarball
        (True, '[project]\nname = "another-project"\n', False),
        (True, "not [valid toml", False),
        (True, None, False),
    ],
)
def test_what_a_development_checkout_is(
    tmp_path: Path, git: bool, pyproject: str | None, expected: bool
) -> None:
    package = tmp_path / "service"
    package.mkdir()
    if git:
        (tmp_path / ".git").write_text("gitdir: /elsewhere\n")  # a linked worktree's .git
    if pyproject is not None:
        (tmp_path / "pyproject.toml").write_text(pyproject)
    assert (development_checkout(package) == tmp_path) is expected


# -- keys that are no secret ------------------------------------------------------------


@pytest.mark.parametrize("env", ["production", "staging"])
def test_the_development_key_is_refused(monkeypatch: pytest.MonkeyPatch, env: str) -> None:
    for key, value in {**PRODUCTION, "ENV": env, "JWT_SECRET": DEV_JWT_SECRET}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError, match=r"JWT_SECRET is the development signing key"):
        load_settings()


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"JWT_SECRET": WRITTEN_HERE}, "JWT_SECRET"),
        (previous_key(WRITTEN_HERE), "JWT_PREVIOUS_SECRET"),
        (previous_key(DEV_JWT_SECRET), "JWT_PREVIOUS_SECRET is the development signing key"),
        ({"METRICS_TOKEN": WRITTEN_HERE}, "METRICS_TOKEN"),
    ],
)
def test_production_refuses_a_secret_found_in_the_repository(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    """WRITTEN_HERE is written in this test file, which git tracks."""
    for key, value in {**PRODUCTION, **variables}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    message = str(excinfo.value)
    assert named in message
    if "development" not in named:
        assert "appears in the project's source" in message
        assert "tests/service/test_safe_defaults.py" in message
    assert WRITTEN_HERE not in message, "the value itself is never echoed"


def test_production_with_generated_secrets_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    variables = {**PRODUCTION, **previous_key(secrets.token_urlsafe(48))}
    variables["METRICS_TOKEN"] = secrets.token_urlsafe(32)
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.env == "production" and settings.jwt_previous_kid == "k0"


@pytest.mark.integration
def test_a_checkout_scans_its_tracked_files_not_the_untracked_ones(tmp_path: Path) -> None:
    """A key committed anywhere in the repository is found; a developer's own untracked file
    (a .env holding real keys) is not a leak."""
    committed, untracked = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "drydock"\n')
    (tmp_path / "service").mkdir()
    (tmp_path / "service" / "__init__.py").write_text("")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "example.md").write_text(f"JWT_SECRET={committed}\n")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
    (tmp_path / ".env").write_text(f"JWT_SECRET={untracked}\n")
    found = found_in_source(
        {"jwt_secret": committed, "metrics_token": untracked}, package_dir=tmp_path / "service"
    )
    assert found == {"jwt_secret": tmp_path / "docs" / "example.md"}


def test_a_release_scans_its_own_files_only(tmp_path: Path) -> None:
    """Without the repository beside it, a release still refuses a key its own code holds
    (a default or an example) and cannot see the tests that hold WRITTEN_HERE."""
    release = release_copy(tmp_path)
    in_package = DEV_JWT_SECRET  # written in service/settings.py
    check = "from service.settings import load_settings; print(load_settings().env)"
    refused = run_from(release, ["-c", check], {**PRODUCTION, "METRICS_TOKEN": in_package})
    assert refused.returncode != 0
    assert "METRICS_TOKEN appears in the project's source" in refused.stderr
    assert str(release / "service" / "settings.py") in refused.stderr
    accepted = run_from(release, ["-c", check], {**PRODUCTION, "METRICS_TOKEN": WRITTEN_HERE})
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.strip() == "production"
