"""`invoke infra.up`: Pulumi's up, with the release the service runs kept as the stack's
image, so that a configuration change never rolls the code back (infra_ops.py runs Pulumi;
this module sits above the targets, which it asks for the release)."""

from __future__ import annotations

from typing import Any

from pipelines import infra_ops
from pipelines.infra_ops import Printer


def deployed_image(stack: str) -> str | None:
    """The release the stack's service runs now (an image by digest), or None before the
    first deploy or when the service cannot be read."""
    from pipelines.targets import get_target

    try:
        return get_target("aws").environment(stack).current_release()
    except Exception:  # no stack yet, no credentials: the stack config decides
        return None


def keep_deployed_image(stack: str, out: Printer) -> str:
    """Pulumi never rolls the code back: after a deploy, `infra.up` provisions with the image
    the service runs, written into the stack config, not the one the config last named."""
    image = deployed_image(stack)
    if image:
        out(f"keeping the deployed release {image} as drydock:image (deploys change it)")
    return image or ""


def up(stack: str, out: Printer = print, **options: Any) -> int:
    """`infra_ops.main("up", ...)`; without `image`, the deployed release is kept."""
    if not options.get("image"):
        options["image"] = keep_deployed_image(stack, out)
    return infra_ops.main("up", stack, out=out, **options)
