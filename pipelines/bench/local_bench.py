"""`invoke bench.local`: the local target's numbers, on free ports in a scratch state dir.

- `env.up` from cold for both environments (first release included), then again when up;
- load balancer overhead: wrk through Caddy against wrk straight at one replica;
- a rolling restart of staging's 2 replicas alone, under load, with its failed requests;
- a deploy of the current commit, steps 2-7 with a 30 s bake (step 1 reads a gate record and
  is not part of the measure: its cost is the test suite's).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pipelines.bench.wrk import run_wrk
from pipelines.targets.local.scratch import scratch_environments
from pipelines.traffic.loadgen import Load, get

ROOT = Path(__file__).resolve().parents[2]


def timed(label: str, results: dict[str, Any], action: Any) -> Any:
    started = time.monotonic()
    value = action()
    results[label] = round(time.monotonic() - started, 2)
    print(f"  {label:<44} {results[label]:7.2f} s", flush=True)
    return value


def run(bake_s: int = 30, report: Path = ROOT / "reports") -> int:
    from pipelines.deploy.runner import build_steps, execute
    from pipelines.deploy.steps import StepContext
    from pipelines.releases import build
    from pipelines.targets.local.environment import LocalEnvironment
    from pipelines.targets.local.layout import state_root
    from pipelines.targets.local.ledger import FileLedger
    from pipelines.targets.local.target import LocalTarget

    results: dict[str, Any] = {"machine": {"cores": os.cpu_count()}}
    print("bench.local: scratch state dir, free ports", flush=True)
    settings = {"drydock:localBakeWindowSeconds": bake_s}
    with scratch_environments("drydock-bench-", **settings) as scratch:
        staging, production = LocalEnvironment("staging"), LocalEnvironment("production")
        timed("env.up cold, both environments", results, lambda: [staging.up(), production.up()])
        timed("env.up when already up, both", results, lambda: [staging.up(), production.up()])

        replica = staging.status().replicas[0]
        through = run_wrk(
            "through Caddy",
            f"{staging.url}/api/_internal/health",
            duration=5,
            connections=16,
            core=None,
        )
        direct = run_wrk(
            "direct",
            f"http://127.0.0.1:{replica.port}/api/_internal/health",
            duration=5,
            connections=16,
            core=None,
        )
        results["load_balancer"] = {
            "through_caddy_rps": through.rps,
            "direct_rps": direct.rps,
            "ratio": round(through.rps / direct.rps, 2),
        }
        print(
            f"  health via Caddy {through.rps:.0f} req/s, direct to one replica "
            f"{direct.rps:.0f} req/s",
            flush=True,
        )

        with Load(staging.url, get("/api/_internal/health"), workers=4, max_seconds=120) as load:
            outcome = staging.restart()
        results["rollout_2_replicas"] = {
            "seconds": round(outcome.duration_s, 2),
            "state": outcome.state.value,
            "requests": load.report.requests,
            "failed": load.report.failures,
            "p95_ms": load.report.p95_ms,
        }
        print(
            f"  rolling restart of 2 replicas {outcome.duration_s:.1f} s, {load.report.summary()}",
            flush=True,
        )

        ledger = FileLedger()
        release = build(state_root() / "releases", "HEAD")
        ctx = StepContext(
            target=LocalTarget(),
            sha=release.git_sha,
            root=ROOT,
            reports=scratch.root / "reports",
            release=release,
            deploy_id="bench",
            options={"bake_s": bake_s},
        )
        steps = build_steps(ledger)[1:]
        with Load(
            production.url, get("/api/_internal/health"), workers=3, max_seconds=600, pause_s=0.01
        ) as load:
            code = timed("deploy steps 2-7", results, lambda: execute(ctx, ledger, steps))
        written = json.loads((scratch.root / "reports" / "report.json").read_text())
        results["deploy"] = {
            "exit_code": code,
            "bake_s": bake_s,
            "steps": {n: s["duration_s"] for n, s in written["steps"].items()},
            "production_requests_during_deploy": load.report.requests,
            "production_failed_during_deploy": load.report.failures,
        }
    path = report / "bench-local.json"
    report.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(
        f"\nbench.local: deploy exit {code}; per step "
        f"{results['deploy']['steps']}; failed requests during the rollout "
        f"{results['rollout_2_replicas']['failed']}; report {path}"
    )
    return 0 if code == 0 else 1
