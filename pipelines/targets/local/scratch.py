"""Both local environments in a throwaway state directory, on free ports, torn down after.

The test suite and `invoke bench.local` run here so they never touch a developer's own
environments (`.local/`) or the ports those use.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.host.ports import free_port_block

if TYPE_CHECKING:
    from pipelines.targets.local.environment import LocalEnvironment

ROOT = Path(__file__).resolve().parents[3]
ENVIRONMENTS = ("staging", "production")
PORTS_PER_ENVIRONMENT = 40  # replica slots from the base, then LB, PostgreSQL and agent


@dataclass
class Scratch:
    root: Path  # deleted on exit; a place for reports too
    state_dir: Path
    stack_dir: Path

    def environment(self, name: str) -> LocalEnvironment:
        """`name`, brought up unless it already is."""
        from pipelines.targets.local.environment import LocalEnvironment

        environment = LocalEnvironment(name)
        if environment.agent_pid() is None or not environment.status().up:
            environment.up()
        return environment


def write_stack_files(stack_dir: Path, settings: dict[str, Any]) -> None:
    """Copies of the committed stack files with `settings` applied and ports from one free
    block, so the two environments cannot collide with each other."""
    import yaml

    stack_dir.mkdir(parents=True, exist_ok=True)
    block = free_port_block(PORTS_PER_ENVIRONMENT * len(ENVIRONMENTS))
    for index, name in enumerate(ENVIRONMENTS):
        base = block + index * PORTS_PER_ENVIRONMENT
        document = yaml.safe_load((ROOT / f"Pulumi.{name}.yaml").read_text())
        document["config"].update(
            {
                "drydock:localReplicaBasePort": base,
                "drydock:localLoadBalancerPort": base + 30,
                "drydock:localPostgresPort": base + 31,
                "drydock:localAgentPort": base + 32,
                **settings,
            }
        )
        (stack_dir / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(document))


@contextmanager
def scratch_environments(prefix: str, **settings: Any) -> Iterator[Scratch]:
    """Point the local target at fresh state and stack directories (`settings` are extra
    `drydock:` stack settings). On exit both environments are stopped and purged: whatever
    runs from a private state directory was started here, even if its `up()` failed halfway."""
    from pipelines.targets.local.environment import STACK_DIR_ENV, LocalEnvironment
    from pipelines.targets.local.layout import STATE_ENV

    root = Path(tempfile.mkdtemp(prefix=prefix))
    scratch = Scratch(root, root / "state", root / "stacks")
    write_stack_files(scratch.stack_dir, settings)
    saved = {key: os.environ.get(key) for key in (STATE_ENV, STACK_DIR_ENV)}
    os.environ[STATE_ENV], os.environ[STACK_DIR_ENV] = (
        str(scratch.state_dir),
        str(scratch.stack_dir),
    )
    try:
        yield scratch
    finally:
        for name in ENVIRONMENTS:
            try:
                LocalEnvironment(name).down(purge_data=True)
            except Exception as exc:
                print(f"{name}: teardown failed: {exc}", file=sys.stderr)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(root, ignore_errors=True)
