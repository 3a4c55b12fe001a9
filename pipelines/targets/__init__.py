"""Where pipelines run: `local` (the embedded default) or `aws`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipelines.targets.base import TargetError

if TYPE_CHECKING:
    from pipelines.targets.base import Target

TARGETS = ("local", "aws")


def get_target(name: str = "local") -> Target:
    if name == "local":
        from pipelines.targets.local import LocalTarget

        return LocalTarget()
    if name == "aws":
        raise TargetError(
            "the aws target is not available yet in this version; "
            "provision with `invoke infra.up` and deploy with the local target "
            "meanwhile"
        )
    raise TargetError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}")
