"""The outputs contract, the entry point, and the import boundaries of infra/."""

from __future__ import annotations

import runpy
import subprocess
import sys
from typing import Any

import pulumi
import pytest

from infra import outputs
from infra.names import Names
from tests.infra.harness import (
    RELEASE_CONFIG,
    ROOT,
    Stack,
    own_event_loop,
    pulumi_config_strings,
    reset_runtime,
    stack_file_config,
)

pytestmark = pytest.mark.unit


def test_outputs_are_exactly_the_contract(stack: Stack) -> None:
    assert tuple(stack.outputs) == outputs.ALL
    n = Names(stack.name)
    assert stack.outputs[outputs.CLUSTER_NAME] == n.cluster
    assert stack.outputs[outputs.SERVICE_NAME] == n.service
    assert stack.outputs[outputs.TASK_DEFINITION_FAMILY] == n.task_family
    assert stack.outputs[outputs.DB_INSTANCE_ID] == n.db_instance
    assert stack.outputs[outputs.ECR_REPOSITORY_NAME] == n.repository
    assert stack.outputs[outputs.ALARM_NAMES] == n.alarms
    families = {t.get("family") for t in stack.of_type("aws:ecs/taskDefinition:TaskDefinition")}
    assert families == {n.task_family, n.migrate_family}


def test_secrets_are_exported_as_arns_only(stack: Stack) -> None:
    for key in (outputs.DB_MASTER_SECRET_ARN, outputs.APP_DB_SECRET_ARN, outputs.JWT_SECRET_ARN):
        assert stack.outputs[key].startswith("arn:aws:secretsmanager:")


def test_entry_point_reads_config_and_exports_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    config = {**stack_file_config("staging"), **RELEASE_CONFIG}
    exported: dict[str, Any] = {}
    monkeypatch.setattr(pulumi, "export", lambda key, value: exported.__setitem__(key, value))

    @pulumi.runtime.test
    def run() -> None:
        runpy.run_module("infra.__main__", run_name="__main__")

    with own_event_loop():
        reset_runtime("staging", pulumi_config_strings(config))
        run()
    assert tuple(exported) == outputs.ALL


def test_pure_modules_import_without_pulumi() -> None:
    code = (
        "import sys, infra.spec, infra.outputs, infra.names, infra.policy.rules\n"
        "assert not [m for m in sys.modules if m.startswith(('pulumi', 'boto'))], 'heavy import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_no_module_in_infra_shadows_another_when_pulumi_runs_the_directory() -> None:
    # Pulumi puts infra/ itself on sys.path; a module named like a stdlib or project package
    # (secrets.py, service.py) would replace it for every import in the program.
    taken = set(sys.stdlib_module_names) | {"service", "pipelines", "infra", "tests", "pulumi"}
    for path in [*(ROOT / "infra").glob("*.py"), *(ROOT / "infra" / "policy").glob("*.py")]:
        assert path.stem not in taken, path


def test_a_misspelled_resource_argument_raises_when_the_stack_is_built() -> None:
    """mypy does not follow pulumi_aws (pyproject.toml says why); building the stacks under
    the mocks is what catches a wrong argument name, so that must stay an error."""
    import pulumi_aws as aws

    @pulumi.runtime.test
    def declare() -> None:
        aws.s3.Bucket("misspelled", bucket_prefx="drydock-")

    with own_event_loop():
        reset_runtime("staging", {})
        with pytest.raises(TypeError, match="bucket_prefx"):
            declare()
