"""`invoke infra.scan`: checkov over both Pulumi stacks, reviewed against security/policy.yaml.

For each stack: the program is built under mocks from `Pulumi.<stack>.yaml` (with what a
team sets before the first `pulumi up` filled in where the file leaves it empty), written
as a Terraform plan, and checked by `checkov --framework terraform_plan`. Each failed check
is a finding `<check id>:<resource address>` of that stack, judged by the stack's policy
block: production blocks (`infra_failures: block`, which production cannot lower), staging
reports. A waiver names the check, the resource and the stacks it covers; an expired one
blocks. Everything lands in `reports/infra-scan/` (or `--out`): per stack the plan and
checkov's report, then `scan.json` and `summary.md`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from pipelines.deploy.security.iac import checkov_tool
from pipelines.deploy.security.parsers import checkov_counts, checkov_findings
from pipelines.deploy.security.policy import Finding, Policy, Review, apply_policy, load_policy

STACKS = ("staging", "production")
OUT = Path("reports") / "infra-scan"
POLICY = Path("security") / "policy.yaml"
MANIFEST = "scan.json"
SUMMARY = "summary.md"
# What a platform team sets before the first `pulumi up` (README "Provision AWS"), used where
# the stack file leaves it empty, so the scan sees the stack as it will run. A key the spec
# does not know is left out.
_ACCOUNT = "123456789012"
BEFORE_FIRST_UP: dict[str, Any] = {
    "drydock:certificateArn": (
        f"arn:aws:acm:{{region}}:{_ACCOUNT}:certificate/00000000-0000-4000-8000-000000000000"
    ),
    "drydock:domainName": "{stack}.drydock.example.com",
    "drydock:image": (
        f"{_ACCOUNT}.dkr.ecr.{{region}}.amazonaws.com/drydock-{{stack}}@sha256:" + "0" * 64
    ),
    "drydock:alarmEmails": ["oncall@drydock.example.com"],
    "drydock:githubRepository": "acme/drydock",
    "drydock:drRegion": "eu-central-1",
}
CHECK_ID = re.compile(r"CKV2?_[A-Z0-9]+_\d+:")
EXIT_BLOCKED, EXIT_ERROR = 1, 2


class ScanError(RuntimeError):
    """The scan could not run (a bad stack file, checkov missing); the message says why."""


def stack_config(root: Path, stack: str) -> dict[str, Any]:
    """`Pulumi.<stack>.yaml`'s config, with BEFORE_FIRST_UP where it is empty."""
    from infra.spec import SETTINGS

    path = root / f"Pulumi.{stack}.yaml"
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ScanError(f"{path}: cannot read the stack file: {exc}") from None
    config = dict(document.get("config") or {})
    region = str(config.get("aws:region") or "eu-west-1")
    for key, value in BEFORE_FIRST_UP.items():
        if key in SETTINGS and config.get(key) in (None, "", [], ()):
            filled = value.format(region=region, stack=stack) if isinstance(value, str) else value
            config[key] = filled
    return config


def scan_stack(
    root: Path,
    stack: str,
    out: Path,
    binary: Path,
    known: set[str],
    runner: checkov_tool.Runner,
) -> dict[str, Any]:
    """Build, plan and check one stack; its entry in the manifest."""
    from infra.spec import SpecError
    from pipelines.deploy.security.iac.mocked_stack import build
    from pipelines.deploy.security.iac.terraform_plan import plan
    from pipelines.deploy.security.iac.terraform_types import terraform_type

    started = time.monotonic()
    try:
        mocked = build(stack, stack_config(root, stack))
    except SpecError as exc:
        raise ScanError(f"{stack}: the stack's settings are refused: {exc}") from None
    document = plan(mocked)
    plan_file = out / f"{stack}.plan.json"
    plan_file.write_text(json.dumps(document, indent=1) + "\n")
    built_s = time.monotonic() - started
    report = checkov_tool.run(binary, plan_file, runner)
    report_file = out / f"{stack}.checkov.json"
    report_file.write_text(report)
    counts = checkov_counts(json.loads(report))
    types = {r.type: terraform_type(r.type) for r in mocked.resources if r.custom}
    return {
        "stack": stack,
        "plan": plan_file.name,
        "report": report_file.name,
        "resources_declared": sum(1 for r in mocked.resources if r.custom),
        "resources_planned": len(document["planned_values"]["root_module"]["resources"]),
        **counts,
        # Pulumi type -> Terraform type (None: no Terraform twin, left out of the plan)
        "types": dict(sorted(types.items())),
        # Planned types no checkov check names: nothing checked them.
        "unchecked_types": sorted({t for t in types.values() if t and t not in known}),
        "build_s": round(built_s, 1),
        "checkov_s": round(time.monotonic() - started - built_s, 1),
    }


def scan(
    root: Path,
    stacks: Sequence[str] = STACKS,
    out: Path | None = None,
    runner: checkov_tool.Runner = subprocess.run,
) -> dict[str, Any]:
    """Every stack in `stacks`; writes the plans, checkov's reports and the manifest."""
    out = out or root / OUT
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    try:
        binary = checkov_tool.executable(root, runner)
        version = checkov_tool.version(binary, runner)
        known = checkov_tool.known_types(binary, runner)
        entries = [scan_stack(root, stack, out, binary, known, runner) for stack in stacks]
    except checkov_tool.CheckovError as exc:
        raise ScanError(str(exc)) from None
    manifest = {
        "started": _iso(started),
        "finished": _iso(time.time()),
        "checkov": version,
        "stacks": entries,
    }
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out / MANIFEST)
    return manifest


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def findings(manifest: Mapping[str, Any], out: Path, policy: Policy) -> list[Finding]:
    """The failed checks of every stack in the manifest, as findings of their stack."""
    found: list[Finding] = []
    for entry in manifest.get("stacks", []):
        stack = str(entry["stack"])
        report = json.loads((out / entry["report"]).read_text())
        found += checkov_findings(report, stack, policy.for_env(stack).unknown_severity)
    return found


def infra_policy(policy: Policy, stack: str) -> Policy:
    """The waivers that can apply to checkov findings of `stack`, and no others: an expired
    pip-audit waiver is step 2's business, not this scan's."""
    waivers = tuple(w for w in policy.waivers if CHECK_ID.match(w.id) and w.covers(stack))
    return replace(policy, waivers=waivers)


def review(
    manifest: Mapping[str, Any], out: Path, policy: Policy, today: dt.date | None = None
) -> dict[str, Review]:
    """Each stack's findings under its own policy block and waivers."""
    every = findings(manifest, out, policy)
    return {
        str(entry["stack"]): apply_policy(
            [f for f in every if f.stack == entry["stack"]],
            infra_policy(policy, str(entry["stack"])),
            str(entry["stack"]),
            today,
        )
        for entry in manifest.get("stacks", [])
    }


def render_summary(manifest: Mapping[str, Any], reviews: Mapping[str, Review]) -> str:
    """The Markdown summary: counts per stack, then each stack's failures and waivers."""
    lines = [
        "# Infrastructure scan",
        "",
        f"checkov {manifest.get('checkov')} over the Terraform plan of each Pulumi stack, "
        f"{manifest.get('finished')}.",
        "",
        "| stack | resources | passed | failed | waived | blocking | warnings |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in manifest.get("stacks", []):
        result = reviews[entry["stack"]]
        lines.append(
            f"| {entry['stack']} | {entry['resources_planned']} | {entry['passed']} | "
            f"{entry['failed']} | {len(result.waived)} | {len(result.blocking)} | "
            f"{len(result.warnings)} |"
        )
    for stack, result in reviews.items():
        lines += ["", f"## {stack}", ""]
        if result.blocking:
            lines += ["Blocking:", ""] + [f"- `{f.id}`: {f.message}" for f in result.blocking]
            lines.append("")
        if result.warnings:
            lines += ["Reported (not blocking here):", ""]
            lines += [f"- `{f.id}`: {f.message}" for f in result.warnings]
            lines.append("")
        if result.waived:
            lines += ["Waived:", ""]
            lines += [
                f"- `{f.id}` by {w.owner} until {w.expires.isoformat()}: {w.reason}"
                for f, w in result.waived
            ]
            lines.append("")
        for waiver in result.unused_waivers:
            lines.append(f"- note: waiver `{waiver.key}` matches nothing here")
        unchecked = next(e for e in manifest["stacks"] if e["stack"] == stack)["unchecked_types"]
        if unchecked:
            lines.append(f"- note: no checkov check covers {', '.join(unchecked)}")
        if not (result.blocking or result.warnings or result.waived):
            lines.append("Every check passed.")
    return "\n".join(lines).rstrip() + "\n"


def command(
    root: Path,
    stack: str = "all",
    out: str = "",
    policy_path: Path | None = None,
    today: dt.date | None = None,
) -> int:
    """`invoke infra.scan`: print each stack's counts, write the reports, and exit 1 when a
    finding blocks (any unwaived production failure, an expired waiver), 2 when the scan
    could not run."""
    from pipelines.deploy.security.policy import PolicyError

    if stack not in (*STACKS, "all"):
        print(f"infra.scan: --stack {stack!r} is not a stack; use staging, production or all")
        return EXIT_ERROR
    stacks = STACKS if stack == "all" else (stack,)
    target = Path(out) if out else root / OUT
    try:
        policy = load_policy(policy_path or root / POLICY)
        for name in stacks:
            policy.for_env(name)
        manifest = scan(root, stacks, target)
    except (ScanError, PolicyError) as exc:
        print(f"infra.scan: {exc}")
        return EXIT_ERROR
    reviews = review(manifest, target, policy, today)
    (target / SUMMARY).write_text(render_summary(manifest, reviews))
    for entry in manifest["stacks"]:
        result = reviews[entry["stack"]]
        print(
            f"infra.scan {entry['stack']}: {entry['passed']} passed, {entry['failed']} failed "
            f"({len(result.waived)} waived, {len(result.blocking)} blocking, "
            f"{len(result.warnings)} reported)"
        )
        for finding in result.blocking:
            print(f"  BLOCK {finding.id}: {finding.message.split(': ', 1)[-1]}")
        for finding in result.warnings:
            print(f"  WARN  {finding.id}: {finding.message.split(': ', 1)[-1]}")
        if entry["unchecked_types"]:
            print(f"  note: no checkov check covers {', '.join(entry['unchecked_types'])}")
    print(f"reports: {target} ({SUMMARY}, {MANIFEST}, <stack>.plan.json, <stack>.checkov.json)")
    blocked = any(not r.ok for r in reviews.values())
    return EXIT_BLOCKED if blocked else 0
