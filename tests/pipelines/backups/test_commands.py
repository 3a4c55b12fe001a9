"""The invoke surface, run as an operator runs it: `invoke backup.*` and `drill.restore` in a
subprocess, against environments configured by stack files and a state directory."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from infra.spec import ROOT
from pipelines.targets.local.environment import STACK_DIR_ENV
from pipelines.targets.local.layout import STATE_ENV
from tests.conftest import PgServer
from tests.pipelines.targets.local.backups.fixtures import Site, build_site, teardown_site

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def site(pg_server: PgServer) -> Iterator[tuple[Site, dict[str, str]]]:
    scratch = Path(tempfile.mkdtemp(prefix="drydock-tasks-"))
    state, stacks = scratch / "state", scratch / "stacks"
    stacks.mkdir()
    for name in ("staging", "production"):
        document = yaml.safe_load((ROOT / f"Pulumi.{name}.yaml").read_text())
        document["config"]["drydock:localPostgresPort"] = pg_server.cluster.port
        (stacks / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(document))
    built = build_site(pg_server, state)
    env = {**os.environ, STATE_ENV: str(state), STACK_DIR_ENV: str(stacks)}
    try:
        yield built, env
    finally:
        teardown_site(built, scratch)


def invoke(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_snapshot_list_prune_restore_refusal(site: tuple[Site, dict[str, str]]) -> None:
    _, env = site
    taken = invoke(
        env, "backup.snapshot", "--env", "production", "--kind", "manual", "--logical-only"
    )
    assert taken.returncode == 0, taken.stdout + taken.stderr
    snapshot_id = taken.stdout.strip().splitlines()[-2]
    assert snapshot_id.startswith("production-manual-")

    listed = invoke(env, "backup.list", "--env", "production")
    assert listed.returncode == 0 and snapshot_id in listed.stdout
    assert listed.stdout.splitlines()[0].split()[:3] == ["id", "kind", "age"]

    pruned = invoke(env, "backup.prune", "--env", "production")
    assert pruned.returncode == 0
    assert "prune production (dry run: nothing deleted)" in pruned.stdout

    refused = invoke(
        env, "backup.restore", "--snapshot", snapshot_id, "--env", "production", "--into", "replace"
    )
    assert refused.returncode == 2, refused.stdout
    assert "refusing to replace production's database" in refused.stdout

    scratch = invoke(
        env,
        "backup.restore",
        "--snapshot",
        snapshot_id,
        "--env",
        "staging",
        "--source",
        "production",
    )
    assert scratch.returncode == 0, scratch.stdout + scratch.stderr
    assert "copy verified" in scratch.stdout and "restored " in scratch.stdout


def test_errors_say_what_and_exit_non_zero(
    site: tuple[Site, dict[str, str]], tmp_path: Path
) -> None:
    _, env = site
    reports = tmp_path / "reports"
    unknown = invoke(env, "backup.snapshot", "--env", "production", "--kind", "hourly")
    assert unknown.returncode == 1
    assert "backup.snapshot: unknown snapshot kind 'hourly'" in unknown.stdout
    missing = invoke(
        env, "drill.restore", "--snapshot", "production-daily-nope", "--reports", str(reports)
    )
    assert missing.returncode == 1
    assert "no snapshot 'production-daily-nope'" in missing.stdout
    bad_env = invoke(env, "backup.list", "--env", "qa")
    assert bad_env.returncode != 0 and "unknown environment 'qa'" in bad_env.stderr + bad_env.stdout


def test_point_in_time_commands_refuse_clearly(site: tuple[Site, dict[str, str]]) -> None:
    _, env = site
    listed = invoke(env, "backup.list", "--env", "staging")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "point-in-time recovery, staging: nothing recoverable" in listed.stdout
    unconfirmed = invoke(
        env,
        "backup.restore",
        "--env",
        "production",
        "--to-time",
        "2026-01-01T00:00:00Z",
        "--into",
        "replace",
    )
    assert unconfirmed.returncode == 2, unconfirmed.stdout
    assert "refusing to replace production's database with its state at" in unconfirmed.stdout
    future = invoke(env, "backup.restore", "--env", "staging", "--to-time", "2999-01-01T00:00Z")
    assert future.returncode == 1
    assert "is in the future" in future.stdout and "recoverable window: none yet" in future.stdout
    garbled = invoke(env, "backup.restore", "--env", "staging", "--to-time", "yesterday")
    assert garbled.returncode == 1 and "is not a time" in garbled.stdout
    both = invoke(
        env, "backup.restore", "--env", "staging", "--to-time", "2026-01-01", "--to-lsn", "0/1"
    )
    assert both.returncode == 1 and "not both" in both.stdout
    unknown = invoke(env, "backup.discard", "--env", "staging", "--id", "pitr-nope")
    assert unknown.returncode == 1 and "no restored copy 'pitr-nope'" in unknown.stdout
