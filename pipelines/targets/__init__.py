"""Where pipelines run: `local` (the embedded default) or `aws`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipelines.targets.base import TargetError

if TYPE_CHECKING:
    from pipelines.targets.base import Target

TARGETS = ("local", "aws")


def get_target(name: str = "local") -> Target:
    if name == "local":
        from pipelines.targets.local.target import LocalTarget

        return LocalTarget()
    if name == "aws":
        from pipelines.targets.aws.target import AwsTarget

        return AwsTarget()
    raise TargetError(
        f"unknown target {name!r}: --target must be {' or '.join(TARGETS)}, not {name!r}"
    )
