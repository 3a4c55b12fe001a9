"""The aws target: the Target protocol on the resources the Pulumi program created.

Provisioning is `pulumi up` (`invoke infra.up`); this target reads the stack's outputs and
drives boto3: ECS for rollouts, rollbacks and one-off migrate tasks, RDS for snapshots,
CloudWatch for observation, Secrets Manager for secrets, and the stack's backups bucket for
the ledger and the deploy lock. Every boto3 client comes from one factory, so tests hand in
moto-backed or Stubber-wrapped clients, and a sleep and a clock, and never wait for real.
"""

from __future__ import annotations

import os
import secrets as pysecrets
import sys
import time
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from infra import outputs as out
from infra.spec import ROOT, EnvironmentSpec, load_stack_file
from pipelines.targets.aws import ecs as ecs_ops
from pipelines.targets.aws.canary import NativeCanary, align_probes, production_rule_of
from pipelines.targets.aws.capabilities import AwsBackupCapability, AwsFaults, AwsOperations
from pipelines.targets.aws.common import (
    LOAD_BALANCER_ARN_SUFFIX,
    TARGET_GROUP_ARN_SUFFIX,
    Clients,
    OutputsProvider,
    StackOutputs,
    aws_errors,
    client_error,
)
from pipelines.targets.aws.database import AwsDatabase
from pipelines.targets.aws.lease import S3Lock
from pipelines.targets.aws.observe import Dimensions, derive_dimensions, observe
from pipelines.targets.aws.secrets import AwsSecrets
from pipelines.targets.aws.status import environment_status
from pipelines.targets.base import (
    EnvironmentStatus,
    MigrationStatus,
    Observation,
    Release,
    RolloutResult,
    RolloutState,
    TargetError,
    check_environment_name,
)

ROLLOUT_TIMEOUT_S = 1800.0  # ECS's circuit breaker decides well within this
POLL_S = 15.0
METRIC_LAG_S = 150.0  # how late ALB datapoints reach CloudWatch, with a margin
LEDGER_BUCKET_ENV = "DRYDOCK_LEDGER_BUCKET"
STACK_DIR_ENV = "DRYDOCK_STACK_DIR"
SMOKE_ADMIN = "smoke-admin@drydock.example.com"
SMOKE_SECRET = "smoke-admin"  # noqa: S105 - a secret name
ADMIN_SECRET = "admin"  # noqa: S105 - the first admin's password, drydock/<env>/admin


class AwsEnvironment:
    target = "aws"
    metric_lag_s = METRIC_LAG_S

    def __init__(
        self,
        name: str,
        provider: OutputsProvider,
        *,
        spec: EnvironmentSpec | None = None,
        clients: Mapping[str, Any] | None = None,
        poll_s: float = POLL_S,
        rollout_timeout_s: float = ROLLOUT_TIMEOUT_S,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = check_environment_name(name)
        self.spec = spec or load_stack_file(
            name, root=Path(os.environ.get(STACK_DIR_ENV, str(ROOT)))
        )
        self._provider = provider
        self.clients = Clients(self.spec.region, clients)
        self.poll_s = poll_s
        self.rollout_timeout_s = rollout_timeout_s
        self.sleep = sleep
        self.clock = clock
        self.wall_clock = wall_clock  # what a lease's end is written in, for other hosts
        self._dimensions: Dimensions | None = None
        self._smoke_admin_ready = False

    # -- parts -----------------------------------------------------------------

    @cached_property
    def outputs(self) -> StackOutputs:
        return StackOutputs(self.name, self._provider(self.name))

    @cached_property
    def database(self) -> AwsDatabase:
        return AwsDatabase(
            self.name,
            self.outputs,
            self.clients,
            current_image=lambda: self._current()[0].image,
            poll_s=self.poll_s,
            timeout_s=self.rollout_timeout_s,
            sleep=self.sleep,
        )

    @property
    def secrets(self) -> AwsSecrets:
        return AwsSecrets(self.name, self.clients("secretsmanager"))

    @property
    def backups(self) -> AwsBackupCapability:
        return AwsBackupCapability(self)

    @property
    def operations(self) -> AwsOperations:
        return AwsOperations(self)

    @property
    def faults(self) -> AwsFaults:
        return AwsFaults(self)

    @property
    def location(self) -> str:
        return f"stack {self.name} in {self.spec.region}"

    @property
    def url(self) -> str:
        return str(self.outputs.get(out.SERVICE_URL, ""))

    @property
    def bake_window_s(self) -> float:
        return float(self.spec.bake_window_seconds)

    def lock(self, on_break: Callable[[str], object] = print) -> S3Lock:
        """This environment's deploy lock, a renewed lease in its own stack's backups bucket."""
        return S3Lock(
            self.outputs[out.BACKUPS_BUCKET],
            self.name,
            client=self.clients("s3"),
            clock=self.wall_clock,
            on_break=on_break,
        )

    # -- lifecycle -------------------------------------------------------------

    def up(self, release: Release | None = None, bootstrap: bool = True) -> EnvironmentStatus:
        """AWS is provisioned by `invoke infra.up`; this checks the stack is there and, with
        a `release` not yet serving, migrates to it and rolls it out."""
        if release is not None and bootstrap and self.current_release() != release.id:
            self.migrate(release)
            result = self.rollout(release)
            if not result.ok:
                raise TargetError(f"{self.name}: rollout of {release.id} failed: {result.reason}")
        return self.status()

    def down(self, purge_data: bool = False) -> list[str]:
        raise TargetError(
            f"{self.name}: the aws target does not tear environments down; that is `pulumi "
            f"destroy --stack {self.name}`, which keeps a final snapshot, the backups and keys"
        )

    def status(self) -> EnvironmentStatus:
        return environment_status(self)

    # -- releases --------------------------------------------------------------

    def _current(self) -> tuple[ecs_ops.Revision, dict[str, Any], dict[str, Any]]:
        """The service's revision, its raw task definition, and the service itself."""
        ecs = self.clients("ecs")
        service = ecs_ops.describe_service(
            ecs, self.outputs[out.CLUSTER_NAME], self.outputs[out.SERVICE_NAME]
        )
        revision, definition = ecs_ops.describe_revision(
            ecs, service["taskDefinition"], self.outputs[out.CONTAINER_NAME]
        )
        return revision, definition, service

    @aws_errors("reading the current release")
    def current_release(self) -> str | None:
        return self._current()[0].release

    @aws_errors("rollout")
    def rollout(self, release: Release, timeout_s: float | None = None) -> RolloutResult:
        """A new revision of the service's task definition running `release.artifact`,
        rolled out by ECS and watched until it settles."""
        started = self.clock()
        if "@sha256:" not in release.artifact:
            raise TargetError(
                f"{self.name}: the aws target deploys images pinned by digest "
                f"(<repository>@sha256:<digest>); got {release.artifact!r}"
            )
        ecs = self.clients("ecs")
        current, definition, service = self._current()
        head = ecs_ops.primary(service)
        if (
            current.image == release.artifact
            and head is not None
            and head.get("taskDefinition") == current.arn
            and head.get("rolloutState") == "COMPLETED"
        ):
            return RolloutResult(
                RolloutState.COMPLETED,
                release.id,
                current.release,
                f"{release.id} is already serving ({current.arn.rsplit('/', 1)[-1]})",
                self.clock() - started,
            )
        tags = ecs_ops.release_tags(current, release.id, **{"git-sha": release.git_sha})
        wanted = ecs_ops.register_with_image(
            ecs, definition, self.outputs[out.CONTAINER_NAME], release.artifact, tags
        )
        return self._deploy(service, current, wanted, release.id, timeout_s, started)

    @aws_errors("starting the deployment")
    def start_deployment(self, release: Release) -> tuple[str | None, str]:
        """A new revision running `release.artifact`, handed to ECS without waiting: the
        service's deployment strategy (the native canary) takes it from there. Returns the
        release that served before and the new revision's ARN."""
        ecs = self.clients("ecs")
        current, definition, _ = self._current()
        tags = ecs_ops.release_tags(current, release.id, **{"git-sha": release.git_sha})
        wanted = ecs_ops.register_with_image(
            ecs, definition, self.outputs[out.CONTAINER_NAME], release.artifact, tags
        )
        ecs.update_service(
            cluster=self.outputs[out.CLUSTER_NAME],
            service=self.outputs[out.SERVICE_NAME],
            taskDefinition=wanted,
            forceNewDeployment=False,
        )
        return current.release, wanted

    @aws_errors("reading the production listener rule")
    def production_rule_arn(self) -> str:
        """The listener rule whose weights ECS moves during a canary deployment."""
        rule = production_rule_of(self._current()[2])
        if rule:
            return rule
        raise TargetError(
            f"{self.name}: the service has no production listener rule: the canary needs "
            "drydock:rolloutStrategy=canary applied to the stack (invoke infra.up)"
        )

    @cached_property
    def canary(self) -> NativeCanary:
        # One per environment: it follows one deployment from its start to its end.
        return NativeCanary(self)

    @aws_errors("reconfiguring the service")
    def reconfigure(self, variables: Mapping[str, str]) -> RolloutResult:
        """The serving release again, with `variables` set in its container's environment:
        a new revision of the current one, rolled out and watched like a release."""
        started = self.clock()
        current, definition, service = self._current()
        sha = current.tags.get("drydock:git-sha", "")
        tags = ecs_ops.release_tags(current, current.release, **{"git-sha": sha})
        wanted = ecs_ops.register_with_environment(
            self.clients("ecs"), definition, self.outputs[out.CONTAINER_NAME], variables, tags
        )
        return self._deploy(service, current, wanted, current.release, None, started)

    @aws_errors("rollback")
    def rollback(self, to_release: str | None = None) -> RolloutResult:
        """Roll the code back (never the data) to `to_release` or to the most recently
        completed release before the current one, watched like a rollout."""
        started = self.clock()
        ecs = self.clients("ecs")
        current, _, service = self._current()
        revisions = ecs_ops.history(
            ecs, self.outputs[out.TASK_DEFINITION_FAMILY], self.outputs[out.CONTAINER_NAME]
        )
        try:
            target = ecs_ops.rollback_target(revisions, current, to_release)
        except TargetError as exc:
            raise TargetError(f"{self.name}: {exc}") from None
        # The old image judges the schema itself, in a one-off task: a release that cannot
        # serve on it would only cycle tasks that never pass the health check.
        status = self.database.migration_status(target.image)
        if not status.compatible:
            return RolloutResult(
                RolloutState.FAILED,
                target.release,
                current.release,
                f"refused before any change: {target.release} cannot serve on this schema "
                f"({status.reason or 'schema at ' + str(status.current)}). To go back that "
                "far, restore a pre-deploy snapshot beside the live instance (invoke "
                f"backup.list --env {self.name} --target aws, then the command invoke "
                "backup.restore --target aws prints) and switch over",
                self.clock() - started,
                ("refused",),
            )
        return self._deploy(service, current, target.arn, target.release, None, started)

    def _deploy(
        self,
        service: Mapping[str, Any],
        current: ecs_ops.Revision,
        wanted: str,
        release_id: str,
        timeout_s: float | None,
        started: float,
    ) -> RolloutResult:
        ecs = self.clients("ecs")
        known = {wanted: release_id, current.arn: current.release}

        def label(arn: str) -> str:
            short = arn.rsplit("/", 1)[-1]
            return f"{short} ({known[arn]})" if arn in known else short

        watch = ecs_ops.DeploymentWatch(
            ecs,
            self.outputs[out.CLUSTER_NAME],
            self.outputs[out.SERVICE_NAME],
            self.poll_s,
            self.sleep,
            self.clock,
        )
        watch.remember(service)
        verdict = watch.deploy(wanted, current.arn, timeout_s or self.rollout_timeout_s, label)
        if verdict.state is RolloutState.COMPLETED:
            note = ecs_ops.mark_completed(ecs, wanted, time.time())
            if note:
                watch.events.append(note)
        reason = verdict.reason
        rule = production_rule_of(service)
        if rule is not None:
            from botocore.exceptions import BotoCoreError, ClientError

            # A service on the native canary ran this as a canary too: ECS may have swapped
            # the target groups, and the probes rule must follow (canary.py).
            try:
                weights, moved = align_probes(
                    self.clients("elbv2"), rule, self.outputs[out.PROBES_RULE_ARN]
                )
                if moved:
                    watch.events.append(f"probes rule now forwards as production: {weights}")
            except (TargetError, ClientError, BotoCoreError) as exc:
                reason += (
                    f"; the probes rule was not aligned with the production rule ({exc}): "
                    "the next deploy aligns it, or copy the weights with `aws elbv2 modify-rule`"
                )
        return RolloutResult(
            verdict.state,
            release_id,
            current.release,
            reason,
            self.clock() - started,
            tuple(watch.events),
        )

    # -- observation -----------------------------------------------------------

    def dimensions(self) -> Dimensions:
        """The ALB's metric dimensions: from the outputs if exported, else from the service."""
        if self._dimensions is None:
            lb = self.outputs.get(LOAD_BALANCER_ARN_SUFFIX)
            if lb:
                self._dimensions = Dimensions(lb, self.outputs.get(TARGET_GROUP_ARN_SUFFIX))
            else:
                service = self._current()[2]
                self._dimensions = derive_dimensions(service, self.clients("elbv2"))
        return self._dimensions

    @aws_errors("observing CloudWatch")
    def observe(self, window_s: float, end: float | None = None) -> Observation:
        """The window ending at `end` (default now), read once CloudWatch has its metrics:
        the ALB publishes each minute's datapoints a minute or two late."""
        until = end if end is not None else time.time()
        lag = until + self.metric_lag_s - time.time()
        if lag > 0:
            self.sleep(lag)
        return observe(
            self.clients("cloudwatch"),
            self.clients("logs"),
            self.dimensions(),
            self.outputs.alarm_names.values(),
            self.outputs[out.LOG_GROUP_NAME],
            window_s,
            until,
        )

    # -- what a deploy needs ---------------------------------------------------

    @aws_errors("preparing the first admin")
    def migrate(self, release: Release) -> MigrationStatus:
        """Migrate in a one-off task of the release, which then makes sure the first admin
        (`drydock:adminEmail`) exists, before the release serves: nobody can register its
        address first. Its password is generated into Secrets Manager once; only an argon2
        hash of it travels in the task's overrides, and an existing admin is left alone."""
        from service.security.passwords import hash_password

        password = self.secrets.ensure(ADMIN_SECRET, lambda: pysecrets.token_urlsafe(24))
        admin = {
            "ADMIN_EMAIL": self.spec.admin_email,
            "ADMIN_PASSWORD_HASH": hash_password(password),
        }
        return self.database.migrate(release.artifact, admin)

    def snapshot(self, kind: str, reason: str = "", deploy_id: str = "") -> dict[str, Any]:
        """A manual RDS snapshot. After a pre-deploy one, the older pre-deploy snapshots
        beyond `preDeploySnapshotsKept` are deleted (two per release would otherwise reach
        RDS's quota of manual snapshots); the other kinds are `invoke backup.prune`'s."""
        record = self.database.snapshot(kind, deploy_id=deploy_id, reason=reason)
        if kind == "pre-deploy":
            record["pruned"] = self._prune_pre_deploy()
        return record

    def _prune_pre_deploy(self) -> list[str]:
        """The deleted ids. A failure leaves the deploy alone, which has its snapshot, and
        says how to prune by hand."""
        try:
            return self.backups.store.prune(dry_run=False, kinds=("pre-deploy",)).deleted
        except (TargetError, client_error()) as exc:
            print(
                f"warning: {self.name}: pruning pre-deploy snapshots failed ({exc}); the new "
                f"snapshot is taken. Prune with: invoke backup.prune --env {self.name} "
                "--target aws --apply",
                file=sys.stderr,
            )
            return []

    def verify_snapshot(self, snapshot_id: str) -> dict[str, Any]:
        return self.database.verify_snapshot(snapshot_id)

    @aws_errors("describing the database")
    def restore_command(self, snapshot_id: str) -> str:
        """Restores beside the live instance, never over it: switching is a person's call."""
        instance = self.outputs[out.DB_INSTANCE_ID]
        described = self.clients("rds").describe_db_instances(DBInstanceIdentifier=instance)
        live = described["DBInstances"][0]
        groups = " ".join(g["VpcSecurityGroupId"] for g in live.get("VpcSecurityGroups", []))
        return (
            f"aws rds restore-db-instance-from-db-snapshot --region {self.spec.region} "
            f"--db-snapshot-identifier {snapshot_id} "
            f"--db-instance-identifier {instance}-restored-{time.strftime('%Y%m%d%H%M')} "
            f"--db-subnet-group-name {live.get('DBSubnetGroup', {}).get('DBSubnetGroupName')} "
            f"--vpc-security-group-ids {groups} --no-publicly-accessible"
        )

    @aws_errors("preparing the smoke admin")
    def smoke_credentials(self, release: Release | None = None) -> tuple[str, str]:
        """The smoke suite's admin, made once per environment by a one-off task of the
        release. Only a hash of its password goes into the task's overrides."""
        password = self.secrets.ensure(SMOKE_SECRET, lambda: pysecrets.token_urlsafe(24))
        if not self._smoke_admin_ready:
            if release is None:
                raise TargetError(
                    f"{self.name}: the smoke admin is made by a release's one-off task; "
                    "name the release (a deploy does)"
                )
            from service.security.passwords import hash_password

            self.database.run_task(
                ["ensure-admin", SMOKE_ADMIN],
                release.artifact,
                environment={"ADMIN_PASSWORD_HASH": hash_password(password)},
            )
            self._smoke_admin_ready = True
        return SMOKE_ADMIN, password
