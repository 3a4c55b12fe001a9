"""The aws target's entry: one AwsEnvironment per stack, the S3 ledger and the S3 lock."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from infra import outputs as out
from pipelines.targets.aws.common import Clients, OutputsProvider, aws_errors, outputs_provider
from pipelines.targets.aws.environment import LEDGER_BUCKET_ENV, AwsEnvironment
from pipelines.targets.aws.images import REVISION_LABEL, ImageRef, image_labels
from pipelines.targets.aws.lease import S3Lock
from pipelines.targets.aws.s3 import S3Ledger
from pipelines.targets.base import Release, TargetError

COMMIT = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")  # a full SHA-1 or SHA-256 commit id


class AwsTarget:
    name = "aws"

    def __init__(
        self,
        stack_outputs_provider: OutputsProvider | Mapping[str, Mapping[str, Any]] | None = None,
        **options: Any,
    ) -> None:
        """`stack_outputs_provider`: stack -> outputs, or a mapping of them; by default the
        file named by DRYDOCK_AWS_OUTPUTS_FILE, else Pulumi. `options` go to every
        AwsEnvironment (spec, clients, poll_s, rollout_timeout_s, sleep, clock, wall_clock)."""
        self.provider = outputs_provider(stack_outputs_provider)
        self.options = options
        self._environments: dict[str, AwsEnvironment] = {}

    def environment(self, name: str) -> AwsEnvironment:
        # One object per environment, so what it learnt (dimensions, the smoke admin) sticks.
        if name not in self._environments:
            self._environments[name] = AwsEnvironment(name, self.provider, **self.options)
        return self._environments[name]

    def ledger(self) -> S3Ledger:
        """One ledger for both environments: in DRYDOCK_LEDGER_BUCKET, else in production's
        backups bucket, where the release history that matters lives."""
        bucket = os.environ.get(LEDGER_BUCKET_ENV)
        production = self.environment("production")
        if not bucket:
            try:
                bucket = production.outputs[out.BACKUPS_BUCKET]
            except TargetError as exc:
                raise TargetError(
                    f"the ledger lives in production's backups bucket, and {exc}; or set "
                    f"{LEDGER_BUCKET_ENV}"
                ) from None
        return S3Ledger(bucket, client=production.clients("s3"))

    @contextmanager
    def lock(self, name: str, purpose: str) -> Iterator[S3Lock]:
        with self.environment(name).lock().held(purpose) as held:
            yield held

    def release(self, ref: str | None, sha: str) -> Release:
        """On AWS a release is an image already pushed, named by its digest."""
        if not ref or "@sha256:" not in ref:
            raise TargetError(
                "--release must be an image pinned by digest "
                "(<account>.dkr.ecr.<region>.amazonaws.com/<repo>@sha256:<digest>) "
                "for the aws target; build and push it first"
            )
        return Release(
            id=ref,
            version="",
            git_sha=sha,
            artifact=ref,
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )

    @aws_errors("reading the release image's commit from ECR")
    def artifact_commit(self, release: Release) -> str:
        """The commit in the image's revision label, set when it was built; an image
        without one is refused, since nothing would tie it to the commit steps 1-4 passed."""
        ref = ImageRef.parse(release.artifact)
        ecr = Clients(ref.region, self.options.get("clients"))("ecr")
        commit = image_labels(ecr, ref).get(REVISION_LABEL, "").strip().lower()
        if not COMMIT.match(commit):
            shown = f"is {commit!r}" if commit else "is missing"
            raise TargetError(
                f"the label {REVISION_LABEL} of {release.id} {shown}, so nothing ties the image "
                "to a commit that passed steps 1-4. Build it with `docker build --build-arg "
                "REVISION=$(git rev-parse HEAD)` (the deploy workflow does), push it, and "
                "deploy the new digest"
            )
        return commit
