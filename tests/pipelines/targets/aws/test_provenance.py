"""Steps 5-7 on AWS refuse an image whose commit has no green steps 1-4 in the ledger.
ECR is the Stubber (with the config blob over real HTTP), the ledger is the S3 one in moto,
and ECS and RDS are Stubbers with no answers: a step that called them would fail otherwise
than by its refusal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from botocore.stub import Stubber
from moto import mock_aws

from infra.spec import defaults
from pipelines.deploy import provenance
from pipelines.deploy.rollout import ProductionStep, StagingStep
from pipelines.deploy.steps import Step, StepContext, StepResult
from pipelines.deploy.verify import VerifyStep
from pipelines.ledger import Ledger
from pipelines.targets.aws.s3 import S3Ledger
from pipelines.targets.aws.target import AwsTarget
from tests.pipelines.targets.aws.conftest import BUCKET, REGION, client, outputs
from tests.pipelines.targets.aws.image_fixtures import COMMIT, blob_server, expect_image, labelled

pytestmark = pytest.mark.unit


@pytest.fixture
def aws(tmp_path: Path) -> Iterator[SimpleNamespace]:
    with mock_aws():
        s3 = client("s3")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        ecr, ecs, rds = client("ecr"), client("ecs"), client("rds")
        with blob_server() as (url, blobs), Stubber(ecr) as stub, Stubber(ecs), Stubber(rds):
            uri = expect_image(stub, url, blobs, labelled())
            target = AwsTarget(
                {"staging": outputs(), "production": outputs()},
                spec=defaults("staging"),
                clients={"ecr": ecr, "ecs": ecs, "rds": rds, "s3": s3},
            )
            ctx = StepContext(
                target=target,
                sha="f" * 40,  # the checkout the pipeline runs from: not what is checked
                root=tmp_path,
                reports=tmp_path / "reports",
                release=target.release(uri, "f" * 40),
            )
            yield SimpleNamespace(ctx=ctx, ledger=S3Ledger(BUCKET, client=s3), uri=uri, stub=stub)


def passed(ledger: Ledger, *outcomes: tuple[int, bool], sha: str = COMMIT) -> None:
    """Steps 1-4 as CI records them, each run alone."""
    for number, ok in outcomes:
        step = SimpleNamespace(number=number, name=provenance.CHECK_STEPS[number])
        result = StepResult(ok, f"step {number} {'passed' if ok else 'found a problem'}")
        provenance.record(ledger, sha, [(step, result)])  # type: ignore[list-item]


STEPS: dict[str, Callable[[Ledger], Step]] = {
    "deploy.staging": StagingStep,
    "deploy.production": ProductionStep,
    "deploy.verify": VerifyStep,
}


@pytest.mark.parametrize("name", STEPS)
def test_steps_5_to_7_refuse_a_commit_without_green_steps_1_to_4(
    aws: SimpleNamespace, name: str
) -> None:
    passed(aws.ledger, (1, True), (2, False), (3, True))
    passed(aws.ledger, (4, True), sha="9" * 40)  # another commit's
    result = STEPS[name](aws.ledger).run(aws.ctx)
    assert result.ok is False
    message = result.summary
    assert message.startswith(f"refused: release {aws.uri} was built from commit {COMMIT}")
    assert "step 2 (security.review) failed at " in message and "found a problem" in message
    assert "step 4 (release.notes) has no record" in message
    assert "step 1 (" not in message and "step 3 (" not in message
    assert "`python3 dev.py gates.ci --target aws`" in message
    assert "`python3 dev.py release.notes --target aws`" in message
    assert message.endswith("Nothing was changed")
    assert [e["kind"] for e in aws.ledger.entries()] == ["checks"] * 4, "nothing else written"


def test_the_newest_record_of_a_step_decides(aws: SimpleNamespace) -> None:
    passed(aws.ledger, (1, True), (2, True), (3, True), (4, True), (2, False))
    assert provenance.missing(aws.ledger, COMMIT) == [
        "step 2 (security.review) failed at "
        f"{aws.ledger.entries()[-1]['at_iso']}: step 2 found a problem"
    ]
    passed(aws.ledger, (2, True))
    assert provenance.missing(aws.ledger, COMMIT) == []


def test_a_commit_with_green_steps_1_to_4_passes_and_is_asked_once(
    aws: SimpleNamespace,
) -> None:
    passed(aws.ledger, (1, True), (2, True), (3, True), (4, True))
    assert provenance.refusal(aws.ctx, aws.ledger) is None
    assert aws.ctx.facts["artifact_commit"] == COMMIT
    aws.stub.assert_no_pending_responses()
    assert provenance.refusal(aws.ctx, aws.ledger) is None  # a call to ECR would fail here
