"""Reading a release image's labels from ECR: the exact `batch_get_image` and
`get_download_url_for_layer` calls (Stubber), and the config blob over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber

from pipelines.targets.aws.images import REVISION_LABEL, ImageRef, image_labels
from pipelines.targets.aws.target import AwsTarget
from pipelines.targets.base import Release, TargetError
from tests.pipelines.targets.aws.conftest import ACCOUNT, REGION, client
from tests.pipelines.targets.aws.image_fixtures import (
    COMMIT,
    REPOSITORY,
    blob_server,
    config_blob,
    expect_image,
    labelled,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def ecr() -> Iterator[tuple[Any, Stubber, str, dict[str, bytes]]]:
    ecr = client("ecr")
    with blob_server() as (url, blobs), Stubber(ecr) as stub:
        yield ecr, stub, url, blobs
        stub.assert_no_pending_responses()


def release(uri: str) -> Release:
    return Release(uri, "", "local-sha", uri, "now")


def test_the_labels_are_read_from_the_image_past_the_attestation(
    ecr: tuple[Any, Stubber, str, dict[str, bytes]],
) -> None:
    client_, stub, url, blobs = ecr
    uri = expect_image(stub, url, blobs, labelled())
    assert image_labels(client_, ImageRef.parse(uri)) == labelled()


def test_the_target_reads_the_commit_from_the_revision_label(
    ecr: tuple[Any, Stubber, str, dict[str, bytes]],
) -> None:
    client_, stub, url, blobs = ecr
    uri = expect_image(stub, url, blobs, labelled(COMMIT.upper()))
    assert AwsTarget({}, clients={"ecr": client_}).artifact_commit(release(uri)) == COMMIT


@pytest.mark.parametrize("revision", ["", "main", "0123456"])
def test_an_image_without_a_full_commit_in_its_label_is_refused(
    ecr: tuple[Any, Stubber, str, dict[str, bytes]], revision: str
) -> None:
    client_, stub, url, blobs = ecr
    labels = {"org.opencontainers.image.title": "drydock API"}
    uri = expect_image(
        stub, url, blobs, {**labels, REVISION_LABEL: revision} if revision else labels
    )
    with pytest.raises(TargetError) as refused:
        AwsTarget({}, clients={"ecr": client_}).artifact_commit(release(uri))
    message = str(refused.value)
    assert f"the label {REVISION_LABEL} of {uri}" in message
    assert ("is missing" if not revision else f"is {revision.lower()!r}") in message
    assert "--build-arg REVISION=$(git rev-parse HEAD)" in message


def test_a_config_blob_that_does_not_match_its_digest_is_refused(
    ecr: tuple[Any, Stubber, str, dict[str, bytes]],
) -> None:
    client_, stub, url, blobs = ecr
    forged = config_blob(labelled("f" * 40))
    uri = expect_image(stub, url, blobs, labelled(), served=forged)
    with pytest.raises(TargetError, match="does not match its digest"):
        image_labels(client_, ImageRef.parse(uri))


def test_an_image_ecr_does_not_have_is_named() -> None:
    ecr = client("ecr")
    digest = "sha256:" + "a" * 64
    with Stubber(ecr) as stub:
        stub.add_response(
            "batch_get_image",
            {
                "images": [],
                "failures": [
                    {
                        "imageId": {"imageDigest": digest},
                        "failureCode": "ImageNotFound",
                        "failureReason": "Requested image not found",
                    }
                ],
            },
        )
        ref = ImageRef.parse(f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{REPOSITORY}@{digest}")
        with pytest.raises(TargetError) as missing:
            image_labels(ecr, ref)
    assert f"ECR has no image {REPOSITORY}@{digest}" in str(missing.value)
    assert "ImageNotFound: Requested image not found" in str(missing.value)


def test_a_uri_not_pinned_by_digest_in_ecr_is_refused() -> None:
    with pytest.raises(TargetError, match="is not an ECR image pinned by digest"):
        ImageRef.parse("ghcr.io/drydock/api@sha256:" + "a" * 64)
