"""Scratch environments, as the test suite and `invoke bench.local` use them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from infra.spec import load_stack_file
from pipelines.targets.local.environment import STACK_DIR_ENV, LocalEnvironment
from pipelines.targets.local.layout import STATE_ENV
from pipelines.targets.local.runtime import NAMES, ensure_secrets
from pipelines.targets.local.scratch import scratch_environments, write_stack_files


def ports(stack: str, root: Path) -> set[int]:
    spec = load_stack_file(stack, root=root)
    slots = range(spec.local_replica_base_port, spec.local_replica_base_port + 30)
    return {*slots, spec.local_lb_port, spec.local_postgres_port, spec.local_agent_port}


@pytest.mark.unit
def test_stack_files_take_disjoint_ports_below_the_ephemeral_range(tmp_path: Path) -> None:
    write_stack_files(tmp_path, {"drydock:localDrainSeconds": 3})
    staging, production = ports("staging", tmp_path), ports("production", tmp_path)
    assert not staging & production
    assert max(staging | production) < 32_768
    assert load_stack_file("production", root=tmp_path).local_drain_seconds == 3


@pytest.mark.integration
def test_a_half_started_environment_is_stopped_and_everything_put_back() -> None:
    before = {key: os.environ.get(key) for key in (STATE_ENV, STACK_DIR_ENV)}
    with scratch_environments("drydock-scratch-test-") as scratch:
        assert os.environ[STATE_ENV] == str(scratch.state_dir)
        staging = LocalEnvironment("staging")
        staging.layout.create()  # what up() does before it fails at the load balancer
        ensure_secrets(staging.secrets)
        cluster = staging.cluster()
        cluster.initialise(staging.secrets.get(NAMES.superuser))
        cluster.start()
    assert not cluster.is_running()
    assert not scratch.root.exists()
    assert {key: os.environ.get(key) for key in (STATE_ENV, STACK_DIR_ENV)} == before
