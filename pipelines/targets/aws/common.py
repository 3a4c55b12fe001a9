"""What every part of the aws target shares: stack outputs, boto3 clients, error helpers.

Stack outputs come from the Pulumi Automation API, or from JSON (a file named by
DRYDOCK_AWS_OUTPUTS_FILE, or a mapping handed to the target) so that CI without the Pulumi
CLI, and the tests, run the same code. boto3 and pulumi are imported only when used.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from infra import outputs as out
from pipelines.targets.base import TargetError

OUTPUTS_FILE_ENV = "DRYDOCK_AWS_OUTPUTS_FILE"
# What the aws target cannot work without; the rest is read where it is used.
REQUIRED = (
    out.CLUSTER_NAME,
    out.SERVICE_NAME,
    out.CONTAINER_NAME,
    out.TASK_DEFINITION_FAMILY,
    out.MIGRATE_TASK_DEFINITION_FAMILY,
    out.TASK_SUBNET_IDS,
    out.TASK_SECURITY_GROUP_ID,
    out.DB_INSTANCE_ID,
    out.BACKUPS_BUCKET,
    out.LOG_GROUP_NAME,
)
# Optional outputs: the ALB metric dimensions, derived from the service when absent.
LOAD_BALANCER_ARN_SUFFIX = "load_balancer_arn_suffix"
TARGET_GROUP_ARN_SUFFIX = "target_group_arn_suffix"

OutputsProvider = Callable[[str], Mapping[str, Any]]
ClientFactory = Callable[[str], Any]


def pulumi_outputs(stack: str) -> dict[str, Any]:
    """`pulumi stack output` for `stack`, through the Automation API."""
    from pipelines.infra_ops import PulumiCliMissing, pulumi_cli, select_stack

    try:
        cli = pulumi_cli()
    except PulumiCliMissing as exc:
        raise TargetError(
            f"{exc}\nWithout the CLI, export the outputs once (`pulumi stack output --json "
            f"--stack {stack} > outputs-{stack}.json`) and point {OUTPUTS_FILE_ENV} at the file."
        ) from None
    from pulumi.automation.errors import CommandError

    try:
        values = select_stack(stack, cli).outputs()
    except CommandError as exc:
        raise TargetError(f"cannot read the outputs of stack {stack}: {exc}") from None
    return {key: getattr(value, "value", value) for key, value in values.items()}


def file_outputs(path: str | Path, stack: str) -> dict[str, Any]:
    """Outputs from JSON: flat (as `pulumi stack output --json` prints them) or keyed by stack.
    A `{env}` in the path is replaced by the stack name."""
    resolved = Path(str(path).replace("{env}", stack))
    try:
        document = json.loads(resolved.read_text())
    except (OSError, ValueError) as exc:
        raise TargetError(f"cannot read stack outputs from {resolved}: {exc}") from None
    if not isinstance(document, dict):
        raise TargetError(f"{resolved}: expected a JSON object of stack outputs")
    nested = document.get(stack)
    return dict(nested) if isinstance(nested, dict) else document


def outputs_provider(
    given: OutputsProvider | Mapping[str, Mapping[str, Any]] | None,
) -> OutputsProvider:
    """The provider to use: the one given, a mapping of stack -> outputs, the file named by
    DRYDOCK_AWS_OUTPUTS_FILE, else Pulumi."""
    if callable(given):
        return given
    if given is not None:
        stacks = given

        def from_mapping(stack: str) -> Mapping[str, Any]:
            if stack not in stacks:
                raise TargetError(f"no stack outputs given for {stack}")
            return stacks[stack]

        return from_mapping
    path = os.environ.get(OUTPUTS_FILE_ENV)
    if path:
        return lambda stack: file_outputs(path, stack)
    return pulumi_outputs


class StackOutputs:
    """The outputs contract of one stack, checked once for the keys the target needs."""

    def __init__(self, stack: str, values: Mapping[str, Any]) -> None:
        self.stack = stack
        self.values = dict(values)
        missing = [key for key in REQUIRED if not self.values.get(key)]
        if missing:
            raise TargetError(
                f"stack {stack} lacks the outputs {', '.join(missing)}: the ECS service and its "
                f"task definitions exist once a release image is set; run `invoke infra.up "
                f"--stack {stack} --image <ecr-uri>@sha256:<digest> --yes`"
            )

    def __getitem__(self, key: str) -> Any:
        if key not in self.values:
            raise TargetError(f"stack {self.stack} has no output {key!r}")
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    @property
    def alarm_names(self) -> dict[str, str]:
        """Alarm key -> CloudWatch alarm name (the output is a map; a list is accepted)."""
        names = self.values.get(out.ALARM_NAMES) or {}
        if isinstance(names, list | tuple):
            return {str(name): str(name) for name in names}
        return {str(key): str(name) for key, name in dict(names).items()}

    @property
    def security_alarm_names(self) -> dict[str, str]:
        """Event -> alarm on its spikes; empty for a stack from before they existed. Shown by
        status and the incident timeline, never part of a deploy's verdict."""
        return {
            str(k): str(v) for k, v in dict(self.values.get(out.SECURITY_ALARM_NAMES) or {}).items()
        }


class Clients:
    """boto3 clients for one region, created on first use; tests hand in their own."""

    def __init__(self, region: str, overrides: Mapping[str, Any] | None = None) -> None:
        self.region = region
        self._clients: dict[str, Any] = dict(overrides or {})

    def __call__(self, service: str) -> Any:
        if service not in self._clients:
            from botocore.config import Config

            # A watch polls for up to half an hour: ride out throttling rather than fail.
            retries = Config(retries={"mode": "standard", "max_attempts": 10})
            self._clients[service] = _session(self.region).client(service, config=retries)
        return self._clients[service]


@functools.cache
def _session(region: str) -> Any:
    # One session per region: it loads each service model once per process.
    import boto3

    return boto3.session.Session(region_name=region)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError, '' for anything else."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def client_error() -> type[Exception]:
    from botocore.exceptions import ClientError

    error: type[Exception] = ClientError
    return error


def image_digest(image: str) -> str:
    """`sha256:…` of an image URI pinned by digest; the URI itself otherwise."""
    return image.split("@", 1)[1] if "@" in image else image


def timestamp(value: Any, fmt: str | None = None) -> str:
    """A datetime from boto3 as ISO 8601 (or `fmt`); '' when absent."""
    if isinstance(value, datetime):
        return value.strftime(fmt) if fmt else value.isoformat()
    return "" if value is None else str(value)


F = TypeVar("F", bound=Callable[..., Any])


def aws_errors(what: str) -> Callable[[F], F]:
    """Turn boto3's errors into a TargetError saying what failed, so a pipeline step
    reports an AWS refusal (permissions, throttling, no credentials) as its failure."""

    def wrap(method: F) -> F:
        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

            try:
                return method(self, *args, **kwargs)
            except NoCredentialsError:
                raise TargetError(
                    f"{getattr(self, 'name', getattr(self, 'env', ''))}: {what}: no AWS "
                    "credentials; set AWS_PROFILE, or the AWS_ACCESS_KEY_ID/"
                    "AWS_SECRET_ACCESS_KEY pair, or run where a role is attached"
                ) from None
            except (ClientError, BotoCoreError) as exc:
                where = getattr(self, "name", getattr(self, "env", ""))
                raise TargetError(f"{where}: {what}: {exc}") from None

        return cast(F, call)

    return wrap
