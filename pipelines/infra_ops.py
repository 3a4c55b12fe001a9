"""`invoke infra.*`: preview, apply and drift-check the Pulumi program via the Automation API.

The Automation API drives the Pulumi CLI, which these functions look for first so that a
missing CLI is one clear message instead of a traceback. `pulumi.automation` is imported
only when a command runs, which keeps `invoke --list` fast.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra.spec import SpecError, load_stack_file, require_for_aws

if TYPE_CHECKING:
    from pulumi.automation import Stack

ROOT = Path(__file__).resolve().parent.parent
POLICY_PACK = ROOT / "infra" / "policy"
INSTALL_HINT = """\
The Pulumi CLI is not installed: no `pulumi` on PATH or in ~/.pulumi/bin.
Install it, open a new shell, then log in to a state backend:

    curl -fsSL https://get.pulumi.com | sh
    pulumi login              # or: pulumi login s3://<bucket>

Other ways to install: https://www.pulumi.com/docs/iac/download-install/
The whole procedure is in README.md, section "Provision AWS"."""

OK, FAILED, USAGE, DRIFT = 0, 1, 2, 3
Printer = Callable[[str], None]


class PulumiCliMissing(RuntimeError):
    pass


def pulumi_cli() -> Path:
    """The CLI the Automation API will run, or PulumiCliMissing with install instructions."""
    found = shutil.which("pulumi")
    if found:
        return Path(found)
    installed = Path.home() / ".pulumi" / "bin" / "pulumi"
    if installed.is_file() and os.access(installed, os.X_OK):
        return installed
    raise PulumiCliMissing(INSTALL_HINT)


def select_stack(stack: str, cli: Path) -> Stack:
    from pulumi import automation as auto

    command = auto.PulumiCommand(root=str(cli.parent.parent)) if cli.parent.name == "bin" else None
    options = auto.LocalWorkspaceOptions(work_dir=str(ROOT), pulumi_command=command)
    return auto.select_stack(stack_name=stack, work_dir=str(ROOT), opts=options)


def changes(summary: Mapping[Any, int]) -> dict[str, int]:
    """The operations other than `same` in a change summary (keys may be enums)."""
    counts = {str(getattr(op, "value", op)): n for op, n in summary.items()}
    return {op: n for op, n in sorted(counts.items()) if op != "same" and n}


def preview(stack: Stack, out: Printer, policy: bool = True) -> int:
    packs = [str(POLICY_PACK)] if policy else None
    result = stack.preview(on_output=out, policy_packs=packs, diff=True)
    planned = changes(result.change_summary)
    out(f"planned changes: {planned or 'none'}")
    return OK


def up(stack: Stack, out: Printer, yes: bool = False, image: str = "", policy: bool = True) -> int:
    if image:
        from pulumi import automation as auto

        # The release image is stack config, so the next `pulumi up` keeps it.
        stack.set_config("drydock:image", auto.ConfigValue(value=image))
    if not yes:
        preview(stack, out, policy)
        out("nothing applied; run again with --yes to apply these changes")
        return OK
    packs = [str(POLICY_PACK)] if policy else None
    stack.up(on_output=out, policy_packs=packs)
    for key, value in sorted(stack.outputs().items()):
        shown = "[secret]" if getattr(value, "secret", False) else getattr(value, "value", value)
        out(f"{key} = {shown}")
    return OK


def drift(stack: Stack, out: Printer) -> int:
    """Refresh in preview-only mode: what in AWS differs from the state Pulumi recorded."""
    result = stack.preview_refresh(on_output=out)
    found = changes(result.change_summary)
    if found:
        out(f"drift detected: {found}; inspect with `pulumi refresh --preview-only --diff`")
        return DRIFT
    out("no drift: AWS matches the recorded state")
    return OK


ACTIONS: dict[str, Callable[..., int]] = {"preview": preview, "up": up, "drift": drift}


def main(action: str, stack: str, out: Printer = print, **options: Any) -> int:
    """Run one action; returns the exit code and prints any failure as one clear message."""
    try:
        cli = pulumi_cli()
        for warning in require_for_aws(load_stack_file(stack)):
            print(f"warning: {warning}", file=sys.stderr)
    except (PulumiCliMissing, SpecError) as exc:
        print(str(exc), file=sys.stderr)
        return USAGE
    from pulumi.automation.errors import CommandError

    try:
        return ACTIONS[action](select_stack(stack, cli), out, **options)
    except CommandError as exc:
        print(f"pulumi {action} failed for stack {stack}:\n{exc}", file=sys.stderr)
        return FAILED
