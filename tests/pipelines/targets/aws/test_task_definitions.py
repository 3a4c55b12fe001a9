"""Task definition revisions against moto: a release's revision copies the current one with
only the image changed, rollback picks the right revision, and the migrate family gets a
revision of the release with the task's entry point."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from pipelines.targets.aws import ecs as aws_ecs
from pipelines.targets.aws.database import ENTRY_POINT
from pipelines.targets.base import MigrationStatus, RolloutState, TargetError
from tests.pipelines.targets.aws.conftest import (
    CLUSTER,
    FAMILY,
    MIGRATE_FAMILY,
    NEW_IMAGE,
    OLD_IMAGE,
    REPO,
    SERVICE,
    FakeTime,
    client,
    deployment,
    environment,
    service,
    task_definition,
    td_arn,
)

pytestmark = pytest.mark.unit
THIRD_IMAGE = f"{REPO}@sha256:{'c' * 64}"


def register(ecs: Any, family: str, image: str, tags: dict[str, str] | None = None) -> str:
    definition = task_definition(family, 0, image, "migrate" if family == MIGRATE_FAMILY else "api")
    request = {k: v for k, v in definition.items() if k not in {"taskDefinitionArn", "revision"}}
    if tags:
        request["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
    return str(ecs.register_task_definition(**request)["taskDefinition"]["taskDefinitionArn"])


@pytest.fixture
def ecs() -> Iterator[Any]:
    with mock_aws():
        yield client("ecs")


def test_a_release_revision_changes_the_image_and_nothing_else(ecs: Any) -> None:
    current_arn = register(ecs, FAMILY, OLD_IMAGE, {"team": "api"})
    current, definition = aws_ecs.describe_revision(ecs, current_arn, "api")
    tags = aws_ecs.release_tags(current, NEW_IMAGE, **{"git-sha": "c0ffee"})
    new_arn = aws_ecs.register_with_image(ecs, definition, "api", NEW_IMAGE, tags)
    new, new_definition = aws_ecs.describe_revision(ecs, new_arn, "api")
    assert new.revision == current.revision + 1 and new.image == NEW_IMAGE
    [old_container], [new_container] = (
        definition["containerDefinitions"],
        new_definition["containerDefinitions"],
    )
    assert new_container["secrets"] == old_container["secrets"]  # valueFrom ARNs as they were
    assert {k: v for k, v in new_container.items() if k != "image"} == {
        k: v for k, v in old_container.items() if k != "image"
    }
    assert new.tags == {"team": "api", "drydock:release": NEW_IMAGE, "drydock:git-sha": "c0ffee"}
    assert new.release == NEW_IMAGE and current.release == OLD_IMAGE


def test_rollback_goes_to_the_latest_completed_release_never_an_unproven_one(ecs: Any) -> None:
    first = register(ecs, FAMILY, OLD_IMAGE)  # Pulumi's revision: no drydock tags
    register(ecs, FAMILY, THIRD_IMAGE, {"drydock:release": THIRD_IMAGE})  # never completed
    current = register(
        ecs, FAMILY, NEW_IMAGE, {"drydock:release": NEW_IMAGE, aws_ecs.COMPLETED_TAG: "200"}
    )
    revisions = aws_ecs.history(ecs, FAMILY, "api")
    assert [r.revision for r in revisions] == [3, 2, 1]
    now = revisions[0]
    assert now.arn == current
    assert aws_ecs.rollback_target(revisions, now, None).arn == first
    assert aws_ecs.rollback_target(revisions, now, OLD_IMAGE).arn == first
    with pytest.raises(TargetError, match="cannot roll back to"):
        aws_ecs.rollback_target(revisions, now, THIRD_IMAGE)

    aws_ecs.mark_completed(ecs, revisions[1].arn, 300)  # it completed later, after all
    revisions = aws_ecs.history(ecs, FAMILY, "api")
    assert aws_ecs.rollback_target(revisions, revisions[0], None).image == THIRD_IMAGE
    assert aws_ecs.rollback_target(revisions, revisions[0], "sha256:" + "a" * 64).arn == first


def test_current_release_reads_the_service(ecs: Any) -> None:
    ecs.create_cluster(clusterName=CLUSTER)
    arn = register(ecs, FAMILY, NEW_IMAGE, {"drydock:release": "1.2.0+abc"})
    ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition=arn, desiredCount=2)
    assert environment({"ecs": ecs}).current_release() == "1.2.0+abc"


def test_the_migrate_family_gets_one_revision_per_image_with_the_entry_point(ecs: Any) -> None:
    register(ecs, MIGRATE_FAMILY, OLD_IMAGE)
    database = environment({"ecs": ecs}).database
    arn = database.task_definition(NEW_IMAGE)
    described = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
    [container] = described["containerDefinitions"]
    assert container["image"] == NEW_IMAGE and container["entryPoint"] == ENTRY_POINT
    assert container["secrets"][0]["valueFrom"].endswith(":url::")
    assert database.task_definition(NEW_IMAGE) == arn  # reused, not registered again


class SchemaAfter:
    """The database as the old image's one-off status task reports it (that task's ECS
    sequence and its reading of a real database are tested in test_migrate_task.py and
    test_migrate_program.py): at 0002, with `serves` the image's verdict."""

    def __init__(self, serves: bool, reason: str = "") -> None:
        self.serves, self.reason = serves, reason
        self.asked: list[str | None] = []

    def migration_status(self, artifact: str | None = None) -> MigrationStatus:
        self.asked.append(artifact)
        return MigrationStatus("0002", "0001", (), self.serves, self.reason, "0001")


def stub_rollback_target(stub: Stubber, where: dict[str, Any]) -> None:
    """The service on revision 2 (the new image), revision 1 (the old one) before it."""
    stub.add_response(
        "describe_services",
        service(2, [deployment("ecs-svc/2", 2, "PRIMARY", "COMPLETED")]),
        where,
    )
    stub.add_response(
        "describe_task_definition",
        {"taskDefinition": task_definition(FAMILY, 2, NEW_IMAGE)},
        {"taskDefinition": td_arn(FAMILY, 2), "include": ["TAGS"]},
    )
    stub.add_response(
        "list_task_definitions",
        {"taskDefinitionArns": [td_arn(FAMILY, 1), td_arn(FAMILY, 2)]},
        {"familyPrefix": FAMILY, "status": "ACTIVE", "sort": "DESC"},
    )
    for revision, image in ((2, NEW_IMAGE), (1, OLD_IMAGE)):
        stub.add_response(
            "describe_task_definition",
            {"taskDefinition": task_definition(FAMILY, revision, image)},
            {"taskDefinition": td_arn(FAMILY, revision), "include": ["TAGS"]},
        )


def test_a_rollback_across_an_expand_migration_settles_on_the_old_revision(
    fake_time: FakeTime,
) -> None:
    ecs = client("ecs")
    where = {"cluster": CLUSTER, "services": [SERVICE]}
    env = environment({"ecs": ecs}, fake_time)
    schema = env.__dict__["database"] = SchemaAfter(serves=True)  # the cached property's slot
    with Stubber(ecs) as stub:
        stub_rollback_target(stub, where)
        stub.add_response(
            "update_service",
            {
                "service": service(1, [deployment("ecs-svc/1b", 1, "PRIMARY", "IN_PROGRESS")])[
                    "services"
                ][0]
            },
            {
                "cluster": CLUSTER,
                "service": SERVICE,
                "taskDefinition": td_arn(FAMILY, 1),
                "forceNewDeployment": False,
            },
        )
        stub.add_response(
            "describe_services",
            service(1, [deployment("ecs-svc/1b", 1, "PRIMARY", "COMPLETED")]),
            where,
        )
        stub.add_response("tag_resource", {}, {"resourceArn": td_arn(FAMILY, 1), "tags": ANY})
        result = env.rollback()
        stub.assert_no_pending_responses()
    assert schema.asked == [OLD_IMAGE]  # the old image judged the schema before anything moved
    assert result.state is RolloutState.COMPLETED
    assert (result.release, result.previous_release) == (OLD_IMAGE, NEW_IMAGE)


def test_a_rollback_across_a_contract_is_refused_before_the_service_changes(
    fake_time: FakeTime,
) -> None:
    ecs = client("ecs")
    where = {"cluster": CLUSTER, "services": [SERVICE]}
    env = environment({"ecs": ecs}, fake_time)
    env.__dict__["database"] = SchemaAfter(False, "it needs code at 0002 or later")
    with Stubber(ecs) as stub:
        stub_rollback_target(stub, where)  # and no update_service: Stubber would refuse it
        result = env.rollback()
        stub.assert_no_pending_responses()
    assert result.state is RolloutState.FAILED and result.events == ("refused",)
    assert "refused before any change" in result.reason
    assert "needs code at 0002 or later" in result.reason
    assert "backup.list --env staging --target aws" in result.reason
