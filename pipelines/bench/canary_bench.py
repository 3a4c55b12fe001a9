"""`invoke bench.canary`: production's canary on scratch environments, under users' order
traffic: a release failing 5 % of order creations, one 100 ms slower on the item listing,
and good releases in a row. Records where each was stopped, the share of users' requests
that failed during the deploy, false aborts, and each stage's overhead (the time from the
end of a stage's window to the next stage's weights) for docs/BENCHMARKS.md."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines.bench.results import write as write_results
from pipelines.targets.local.scratch import scratch_environments

ROOT = Path(__file__).resolve().parents[2]
Edit = Callable[[str], str]
FAULTY_ORDERS: dict[str, Edit] = {
    "service/flags.py": lambda text: text.replace(
        'Flag(\n        "ORDERS_FAULT_INJECTION",\n        False,',
        'Flag(\n        "ORDERS_FAULT_INJECTION",\n        True,',
    )
}
SLOW_LISTING: dict[str, Edit] = {
    "service/api/inventory.py": lambda text: text.replace(
        '    after = decode_cursor("items", cursor) or 0\n',
        "    import asyncio\n\n    await asyncio.sleep(0.1)\n"
        '    after = decode_cursor("items", cursor) or 0\n',
    )
}


def commit(clone: Path, message: str, edits: dict[str, Edit]) -> None:
    for relative, edit in edits.items():
        path = clone / relative
        path.write_text(edit(path.read_text()))
    identity = ["-c", "user.email=bench@example.com", "-c", "user.name=bench"]
    subprocess.run(["git", "-C", str(clone), "add", "--all"], check=True)
    subprocess.run(
        ["git", "-C", str(clone), *identity, "commit", "--quiet", "-m", message], check=True
    )


def deploy(production: Any, release: Any, workdir: Path, name: str) -> dict[str, Any]:
    """Step 6 of `release` under two workers of order traffic; what happened to it."""
    from pipelines.deploy.rollout import ProductionStep
    from pipelines.deploy.runner import execute
    from pipelines.deploy.steps import StepContext
    from pipelines.targets.local.target import LocalTarget
    from pipelines.traffic import synthetic

    target = LocalTarget()
    ledger = target.ledger()
    reports = workdir / "reports" / name
    ctx = StepContext(
        target=target,
        sha=release.git_sha,
        root=ROOT,
        reports=reports,
        release=release,
        deploy_id=f"bench-canary-{name}",
    )
    email, password = production.ensure_smoke_admin()
    fixture = synthetic.prepare(production.url, email, password)
    load = synthetic.traffic(production.url, fixture, 600, workers=2)
    try:
        code = execute(ctx, ledger, [ProductionStep(ledger)])
    finally:
        load.stop()
        synthetic.cleanup(production.url, fixture)
    users = load.report
    step = json.loads((reports / "report.json").read_text())["steps"]["6"]
    canary = step["evidence"].get("canary") or {}
    stages = canary.get("stages", [])
    return {
        "release": release.id,
        "exit_code": code,
        "verdict": canary.get("verdict"),
        "reason": canary.get("reason"),
        "stages": [
            {
                "share": s["share_percent"],
                "verdict": s["verdict"],
                "canary": s["canary"],
                "baseline": s["baseline"],
                "overhead_s": s["overhead_s"],
                "abort_after_s": s.get("abort_after_s"),
            }
            for s in stages
        ],
        "user_requests": users.requests,
        "user_failed": users.failures,
        "user_failed_share": round(users.failures / users.requests, 5) if users.requests else None,
        "serving_after": production.current_release(),
    }


def run(good_runs: int) -> dict[str, Any]:
    from pipelines import releases
    from pipelines.targets.local.layout import state_root

    results: dict[str, Any] = {"machine": {"cores": os.cpu_count(), "load": os.getloadavg()}}
    settings = {"drydock:localDrainSeconds": 2, "drydock:localCanaryStepSeconds": 10}
    with (
        tempfile.TemporaryDirectory(prefix="drydock-bench-canary-") as tmp,
        scratch_environments("drydock-bench-canary-", **settings) as scratch,
    ):
        workdir = Path(tmp)
        production = scratch.environment("production")
        clone = workdir / "repo"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        base = clone / "service" / "__init__.py"
        original = base.read_text()

        def build(message: str, edits: dict[str, Edit], version: str) -> Any:
            base.write_text(original.replace('__version__ = "', f'__version__ = "{version}.'))
            commit(clone, message, edits)
            release = releases.build(state_root() / "releases", "HEAD", root=clone)
            subprocess.run(
                ["git", "-C", str(clone), "reset", "--quiet", "--hard", "HEAD~1"], check=True
            )
            return release

        for name, edits in (("errors", FAULTY_ORDERS), ("latency", SLOW_LISTING)):
            print(f"bench.canary: a release with {name} under order traffic", flush=True)
            results[name] = deploy(production, build(f"bench: {name}", edits, "8.0"), workdir, name)
        results["good"] = []
        for index in range(good_runs):
            print(f"bench.canary: good release {index + 1}/{good_runs}", flush=True)
            release = build(f"bench: good {index}", {}, f"9.{index}")
            results["good"].append(deploy(production, release, workdir, f"good-{index}"))
    return results


def verdicts(results: dict[str, Any]) -> dict[str, bool]:
    errors, latency, good = results["errors"], results["latency"], results["good"]
    overheads = [
        s["overhead_s"] for run in good for s in run["stages"] if s["overhead_s"] is not None
    ]
    return {
        "5 % order errors stopped at the first stage": errors["verdict"] == "aborted at 10 %",
        "at most 2 % of requests failed during that deploy": (errors["user_failed_share"] or 0)
        <= 0.02,
        "+100 ms stopped at or before the second stage": latency["verdict"]
        in ("aborted at 10 %", "aborted at 50 %"),
        "good releases promoted, none aborted": all(r["verdict"] == "promoted" for r in good),
        "good releases: 0 failed requests": all(r["user_failed"] == 0 for r in good),
        "stage overhead at most 2 s": bool(overheads) and max(overheads) <= 2.0,
    }


def summary(results: dict[str, Any]) -> str:
    lines = ["", "bench.canary: production's canary under order traffic"]
    for name in ("errors", "latency"):
        r = results[name]
        lines.append(
            f"  {name:<8} {r['verdict']}; users {r['user_failed']}/{r['user_requests']} failed"
        )
    good = results["good"]
    overheads = [s["overhead_s"] for r in good for s in r["stages"] if s["overhead_s"] is not None]
    promoted = sum(r["verdict"] == "promoted" for r in good)
    lines.append(
        f"  good     {promoted}/{len(good)} promoted; users "
        f"{sum(r['user_failed'] for r in good)}/{sum(r['user_requests'] for r in good)} failed; "
        f"stage overhead max {max(overheads, default=0):.3f} s"
    )
    lines += [f"  {'ok  ' if ok else 'MISS'} {what}" for what, ok in verdicts(results).items()]
    return "\n".join(lines)


def main(good_runs: int = 10, out: str = "reports/bench-canary.json") -> int:
    results = run(good_runs)
    results["verdicts"] = verdicts(results)
    write_results(results, out, summary(results))
    return 0 if all(results["verdicts"].values()) else 1
