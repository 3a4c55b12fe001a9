"""The invoke surface: each task declares its options and makes one call into pipelines/,
where the logic, the argument checks and the messages live.

Everything is imported inside task bodies so that `invoke --list` stays fast.
"""

from __future__ import annotations

from pathlib import Path

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import task

ROOT = Path(__file__).resolve().parent

# --------------------------------------------------------------------------- quality gates


@task(help={"coverage": "minimum coverage of service/ in percent"})
def test(c: Context, coverage: int = 90, k: str = "", markers: str = "") -> None:
    """Lint, type-check and run the whole test suite with coverage."""
    from pipelines.deploy import gates

    raise SystemExit(gates.run_suite(ROOT, coverage, k, markers))


# --------------------------------------------------------------------------- the service


@task(
    help={
        "port": "HTTP port on 127.0.0.1",
        "pg_port": "PostgreSQL port (default: free)",
        "keep_db": "leave PostgreSQL running on exit",
    }
)
def run(c: Context, port: int = 8000, pg_port: int = 0, keep_db: bool = False) -> None:
    """Serve the API on an embedded PostgreSQL 18 with migrations applied."""
    from pipelines import devserver

    devserver.run(port=port, pg_port=pg_port or None, keep_db=keep_db)


service = Collection("service", run)

# --------------------------------------------------------------------------- local environments

ENV_HELP = {"env": "staging, production, or all (default)"}


@task(name="up", help=ENV_HELP)
def env_up(c: Context, env: str = "all") -> None:
    """Start the local environment(s): PostgreSQL 18, secrets, Caddy, the agent. Idempotent."""
    from pipelines.operations import environments

    raise SystemExit(environments.up_command(env))


@task(name="status", help={**ENV_HELP, "json": "print JSON instead of a table"})
def env_status(c: Context, env: str = "all", json: bool = False) -> None:
    """Processes, release, replica health, alarm states, database size and ports."""
    from pipelines.operations import environments

    print(environments.status(env, as_json=json))


@task(name="logs", help={"env": "staging or production", "lines": "lines per file"})
def env_logs(c: Context, env: str = "staging", lines: int = 20) -> None:
    """The newest lines of every process log of one environment."""
    from pipelines.operations import environments

    raise SystemExit(environments.logs_command(env, lines))


@task(
    name="down",
    help={
        **ENV_HELP,
        "purge_data": "also delete data (asks to confirm)",
        "yes": "confirm --purge-data without asking",
    },
)
def env_down(c: Context, env: str = "all", purge_data: bool = False, yes: bool = False) -> None:
    """Stop every process of the environment(s); data stays unless --purge-data."""
    from pipelines.operations import environments

    raise SystemExit(environments.down_command(env, purge_data, yes))


env_ns = Collection("env", env_up, env_status, env_logs, env_down)


@task(
    name="rotate",
    help={
        "env": "staging or production",
        "name": "jwt, metrics, db-app, or a secret's full name (aws: jwt only)",
        "compromised": "keep no previous key: its tokens are refused at once, everyone logs in",
        "target": "local (default) or aws",
    },
)
def secrets_rotate(
    c: Context, env: str, name: str, compromised: bool = False, target: str = "local"
) -> None:
    """Rotate a secret (runbook section 12) and roll the service onto it."""
    from pipelines.operations import rotation

    raise SystemExit(rotation.rotate_command(env, name, compromised, target))


secrets_ns = Collection("secrets", secrets_rotate)

# --------------------------------------------------------------------------- deploy (runbook 7)

DEPLOY_HELP = {
    "target": "local (default) or aws",
    "release": "git ref to release (local; default HEAD) or image URI by digest (aws)",
    "dry_run": "print every step's plan and change nothing",
    "yes": "do not ask for confirmation",
}
BAKE_HELP = {**DEPLOY_HELP, "bake": "seconds of the verify bake (default: the stack's window)"}


@task(
    name="all",
    default=True,
    help={
        **BAKE_HELP,
        "e2e": "step 1 runs the end-to-end tests too (on AWS the record must have them)",
    },
)
def deploy_all(
    c: Context,
    target: str = "local",
    release: str = "",
    dry_run: bool = False,
    yes: bool = False,
    bake: float = 0,
    e2e: bool = False,
) -> None:
    """The 7-step deploy: CI green, security, migrations, notes, staging, production, verify."""
    from pipelines.deploy import runner

    raise SystemExit(runner.main(None, target, release, dry_run, yes, bake, e2e))


@task(name="staging", help=DEPLOY_HELP)
def deploy_staging(
    c: Context, target: str = "local", release: str = "", dry_run: bool = False, yes: bool = False
) -> None:
    """Step 5 alone: snapshot, migrate and roll out staging, then run the smoke suite."""
    from pipelines.deploy import runner

    raise SystemExit(runner.main("deploy.staging", target, release, dry_run, yes, 0))


@task(name="production", help=DEPLOY_HELP)
def deploy_production(
    c: Context, target: str = "local", release: str = "", dry_run: bool = False, yes: bool = False
) -> None:
    """Step 6 alone: verified snapshot, migrate, health-gated rollout of production."""
    from pipelines.deploy import runner

    raise SystemExit(runner.main("deploy.production", target, release, dry_run, yes, 0))


@task(name="verify", help=BAKE_HELP)
def deploy_verify(
    c: Context,
    target: str = "local",
    release: str = "",
    dry_run: bool = False,
    yes: bool = False,
    bake: float = 0,
) -> None:
    """Step 7 alone: bake production under synthetic traffic and judge it."""
    from pipelines.deploy import runner

    raise SystemExit(runner.main("deploy.verify", target, release, dry_run, yes, bake))


deploy_ns = Collection("deploy", deploy_all, deploy_staging, deploy_production, deploy_verify)


OPS_HELP = {"env": "staging or production", "target": "local (default) or aws"}


@task(help={**OPS_HELP, "to": "release id (default: the one before)"})
def rollback(c: Context, env: str, to: str = "", target: str = "local") -> None:
    """Roll the code back, health-gated (runbook section 8). Data is never restored."""
    from pipelines import operations
    from pipelines.operations.common import answer

    raise SystemExit(answer(operations.rollback, env, to or None, target))


@task(name="list", help=OPS_HELP)
def flags_list(c: Context, env: str = "production", target: str = "local") -> None:
    """The feature flags in force (runbook section 9)."""
    from pipelines import operations
    from pipelines.operations.common import answer

    raise SystemExit(answer(operations.flags_table, env, target))


@task(
    name="set",
    positional=["assignments"],
    help={**OPS_HELP, "assignments": "NAME=true|false, several separated by commas"},
)
def flags_set(c: Context, env: str, assignments: str, target: str = "local") -> None:
    """Set flags with a zero-downtime rolling restart, recorded in the ledger."""
    from pipelines import operations
    from pipelines.operations.common import answer

    raise SystemExit(answer(operations.set_flags, env, assignments.split(","), None, target))


flags_ns = Collection("flags", flags_list, flags_set)


@task(name="status", help=OPS_HELP)
def db_status(c: Context, env: str = "staging", target: str = "local") -> None:
    """Applied and pending migrations (runbook section 11)."""
    from pipelines import operations
    from pipelines.operations.common import answer

    raise SystemExit(answer(operations.db_status, env, target))


@task(name="migrate", help=OPS_HELP)
def db_migrate(c: Context, env: str = "staging", target: str = "local") -> None:
    """Apply the running release's migrations."""
    from pipelines import operations
    from pipelines.operations.common import answer

    raise SystemExit(answer(operations.db_migrate, env, target))


@task(name="reset", help={**OPS_HELP, "env": "staging only: production is always refused"})
def db_reset(c: Context, env: str, target: str = "local") -> None:
    """Drop and recreate the database, then migrate. Refuses production; local only."""
    from pipelines import operations
    from pipelines.operations.common import answer

    raise SystemExit(answer(operations.db_reset, env, target))


@task(name="timeline", help={**OPS_HELP, "since": "ISO time or an age like 30m, 6h, 2d"})
def incident_timeline(
    c: Context, env: str = "production", since: str = "24h", target: str = "local"
) -> None:
    """Deploys, rollbacks, flags, alarms and snapshots in time order, as Markdown."""
    from pipelines import operations
    from pipelines.operations.common import answer

    raise SystemExit(answer(operations.timeline, env, since, None, target))


incident_ns = Collection("incident", incident_timeline)
db_ns = Collection("db", db_status, db_migrate, db_reset)

# --------------------------------------------------------------------------- deploy steps 1-4
# Logic in pipelines/deploy/ (gates, security, migrations, notes); run alone through
# pipelines/deploy/single_step.py. A failure exits with the step's code (10 + step number).

STEP_HELP = {
    "target": "local (default) or aws",
    "ref": "git ref of the release (default HEAD)",
    "dry_run": "print the plan only",
}


@task(
    help={
        "coverage": "minimum coverage of service/ in percent",
        "keep_going": "run every gate even after one fails",
        "e2e": "--no-e2e leaves out the end-to-end tests: a record for local deploys only",
    }
)
def check(c: Context, coverage: int = 90, keep_going: bool = False, e2e: bool = True) -> None:
    """The gates on a clean tree, recorded in reports/gates/<sha>.json for deploy step 1."""
    from pipelines.deploy import gates

    raise SystemExit(gates.check_command(ROOT, coverage, keep_going, e2e))


@task(name="ci", help=STEP_HELP)
def gates_ci(c: Context, target: str = "local", ref: str = "HEAD", dry_run: bool = False) -> None:
    """Step 1 alone: a green gate record for exactly this commit (see `invoke check`)."""
    from pipelines.deploy.single_step import run_step

    raise SystemExit(run_step("gates.ci", target, ref, dry_run))


@task(name="scan", help={"osv": "an OSV-Scanner JSON output file to include"})
def security_scan(c: Context, osv: str = "") -> None:
    """pip-audit, bandit (and OSV-Scanner's JSON) of this checkout into reports/security/."""
    from pipelines.deploy.security import scanners

    raise SystemExit(scanners.scan_command(ROOT, osv))


@task(
    name="review",
    help={**STEP_HELP, "policy": "local, staging or production (default: by target)"},
)
def security_review(
    c: Context, target: str = "local", ref: str = "HEAD", dry_run: bool = False, policy: str = ""
) -> None:
    """Step 2 alone: apply security/policy.yaml to the scan artifacts of this commit."""
    from pipelines.deploy.single_step import run_step

    raise SystemExit(run_step("security.review", target, ref, dry_run, policy))


@task(name="migrations", help=STEP_HELP)
def db_migrations(
    c: Context, target: str = "local", ref: str = "HEAD", dry_run: bool = False
) -> None:
    """Step 3 alone: autogenerate diff empty, pending per environment, nothing destructive."""
    from pipelines.deploy.single_step import run_step

    raise SystemExit(run_step("db.migrations", target, ref, dry_run))


@task(name="notes", help=STEP_HELP)
def release_notes(
    c: Context, target: str = "local", ref: str = "HEAD", dry_run: bool = False
) -> None:
    """Step 4 alone: release notes since production's release, into reports/release-notes/."""
    from pipelines.deploy.single_step import run_step

    raise SystemExit(run_step("release.notes", target, ref, dry_run))


gates_ns = Collection("gates", gates_ci)
security_ns = Collection("security", security_scan, security_review)
release_ns = Collection("release", release_notes)
db_ns.add_task(db_migrations)

# --------------------------------------------------------------------------- benchmarks


@task(name="service", help={"duration": "seconds per scenario", "connections": "wrk connections"})
def bench_service(c: Context, duration: float = 10, connections: int = 32) -> None:
    """Service throughput and latency against bare Starlette references (needs wrk)."""
    from pipelines.bench import service_bench

    raise SystemExit(service_bench.run(duration=duration, connections=connections))


@task(name="local", help={"bake": "seconds of the deploy's bake window"})
def bench_local(c: Context, bake: int = 30) -> None:
    """env.up cold/warm, load balancer overhead, rollout under load, deploy steps 2-7."""
    from pipelines.bench import local_bench

    raise SystemExit(local_bench.run(bake_s=bake))


@task(name="schema", help={"out": "JSON results file"})
def bench_schema(c: Context, out: str = "reports/bench-schema.json") -> None:
    """Promote an expand migration and roll back across it, under load (rollout s, p95)."""
    from pipelines.bench import schema_bench

    raise SystemExit(schema_bench.main(out=out))


@task(
    name="gates",
    help={
        "out": "JSON results file",
        "skip_gates": "skip timing the gates serial against parallel",
        "baseline": "also time `python3 dev.py deploy` on fresh clones of this ref and of HEAD",
        "runs": "also run the README test command this many times, counting failed tests",
        "main_job": "time the fresh-clone main job at HEAD and a docs-only redeploy",
        "e2e": "--no-e2e times the gates as a local deploy's step 1 runs them",
    },
)
def bench_gates(
    c: Context,
    out: str = "reports/bench-gates.json",
    skip_gates: bool = False,
    baseline: str = "",
    runs: int = 0,
    main_job: bool = False,
    e2e: bool = True,
) -> None:
    """The gates one after the other against concurrently; the main job; repeated runs."""
    from pipelines.bench import gates_bench

    raise SystemExit(
        gates_bench.main(
            out=out,
            gates=not skip_gates,
            baseline=baseline,
            runs=runs,
            main_job_head=main_job,
            e2e=e2e,
        )
    )


@task(
    name="gameday",
    iterable=["scenario"],
    help={
        "scenario": "a scenario to run (repeatable; default: all)",
        "weaken": "turn a recovery off first: lb (the agent does not restart Caddy)",
    },
)
def bench_gameday(c: Context, scenario: list[str], weaken: str = "") -> None:
    """The game day on a scratch production environment, torn down after."""
    from pipelines.bench import gameday_bench

    raise SystemExit(gameday_bench.main(scenario, weaken))


@task(
    name="canary",
    help={"good_runs": "good releases promoted in a row", "out": "JSON results file"},
)
def bench_canary(c: Context, good_runs: int = 10, out: str = "reports/bench-canary.json") -> None:
    """Production's canary under order traffic: bad releases stopped, good ones promoted."""
    from pipelines.bench import canary_bench

    raise SystemExit(canary_bench.main(good_runs=good_runs, out=out))


bench = Collection(
    "bench", bench_local, bench_service, bench_schema, bench_gates, bench_gameday, bench_canary
)

# --------------------------------------------------------------------------- backups and drills
# Logic in pipelines/backups/commands.py, backups.py and drills.py (runbook sections 6 and 8).

_BACKUP_ENV = "staging or production"
_BACKUP_TARGET = "local (default) or aws (RDS snapshots)"


@task(
    name="snapshot",
    help={
        "env": _BACKUP_ENV,
        "kind": "pre-deploy, daily, weekly, manual or safety",
        "reason": "why, recorded in the manifest and the ledger",
        "deploy_id": "the deploy this snapshot belongs to",
        "logical_only": "skip the physical pg_basebackup",
        "target": _BACKUP_TARGET,
    },
)
def backup_snapshot(
    c: Context,
    env: str,
    kind: str = "manual",
    reason: str = "",
    deploy_id: str = "",
    logical_only: bool = False,
    target: str = "local",
) -> None:
    """A verified snapshot: pg_dump -Fc plus pg_basebackup (checked by pg_verifybackup)."""
    from pipelines.backups import commands

    raise SystemExit(commands.snapshot(env, kind, reason, deploy_id, not logical_only, target))


@task(
    name="list",
    help={
        "env": f"{_BACKUP_ENV} or all",
        "kind": "only this kind",
        "json": "print JSON",
        "target": _BACKUP_TARGET,
    },
)
def backup_list(
    c: Context, env: str = "all", kind: str = "", json: bool = False, target: str = "local"
) -> None:
    """The snapshots of an environment, newest first, and its point-in-time window."""
    from pipelines.backups import commands

    raise SystemExit(commands.show(env, kind or None, as_json=json, target=target))


@task(
    name="prune",
    help={
        "env": _BACKUP_ENV,
        "apply": "delete (production is a dry run without)",
        "target": _BACKUP_TARGET,
    },
)
def backup_prune(
    c: Context, env: str = "staging", apply: bool = False, target: str = "local"
) -> None:
    """Apply retention from the spec; never deletes the newest verified snapshot of a kind."""
    from pipelines.backups import commands

    raise SystemExit(commands.prune(env, apply, target))


@task(
    name="restore",
    help={
        "snapshot": "snapshot id (see backup.list), or newest",
        "env": "the environment restored into",
        "into": "scratch (a new database or cluster) or replace (the environment's own)",
        "yes": "confirm replacing production's database",
        "source": "the environment the snapshot was taken of, when not --env",
        "to_time": "point in time (ISO 8601, UTC unless offset): base backup + WAL replay",
        "to_lsn": "point-in-time restore up to this LSN (e.g. 0/3000148)",
        "target": "local (default); aws: --to-time restores an instance beside the live one",
    },
)
def backup_restore(
    c: Context,
    env: str,
    snapshot: str = "",
    into: str = "scratch",
    yes: bool = False,
    source: str = "",
    to_time: str = "",
    to_lsn: str = "",
    target: str = "local",
) -> None:
    """Restore a snapshot, or the data as of --to-time/--to-lsn (runbook sections 6, 8)."""
    from pipelines.backups import commands

    raise SystemExit(commands.restore(env, snapshot, into, yes, source, target, to_time, to_lsn))


@task(
    name="discard",
    help={"env": _BACKUP_ENV, "id": "the restore's id (printed by backup.restore)"},
)
def backup_discard(c: Context, env: str, id: str, target: str = "local") -> None:
    """Remove a point-in-time copy that backup.restore --into scratch left running."""
    from pipelines.backups import commands

    raise SystemExit(commands.discard(env, id, target))


@task(name="daily", help={"env": _BACKUP_ENV, "target": _BACKUP_TARGET})
def backup_daily(c: Context, env: str = "production", target: str = "local") -> None:
    """For cron or CI: a daily snapshot, then retention applied."""
    from pipelines.backups import commands

    raise SystemExit(commands.daily(env, target))


@task(
    name="restore",
    help={
        "env": "where the scratch copy goes (default staging)",
        "source": "whose data (default production)",
        "snapshot": "use this snapshot id, or newest, instead of a fresh dump",
        "reports": "directory for the reports and history (default reports/drills)",
        "target": "local, or aws: a temporary RDS instance beside the source's",
    },
)
def drill_restore(
    c: Context,
    env: str = "staging",
    source: str = "production",
    snapshot: str = "",
    reports: str = "",
    target: str = "local",
) -> None:
    """The weekly restore drill: restore, verify, serve, measure RTO/RPO, report."""
    from pipelines.backups import commands

    raise SystemExit(commands.drill(env, source, snapshot, reports, target))


@task(
    name="pitr",
    help={
        "env": _BACKUP_ENV + " (running: orders are written through its API)",
        "reports": "directory for the reports (default reports/drills)",
        "target": "local (default) or aws (a copy beside the RDS instance, verified by a task)",
    },
)
def drill_pitr(c: Context, env: str = "staging", reports: str = "", target: str = "local") -> None:
    """Point-in-time drill: write orders, restore to T among them, verify to the row."""
    from pipelines.backups import commands

    raise SystemExit(commands.drill_pitr(env, reports, target))


@task(
    name="drill",
    help={"gigabytes": "size of the generated database", "out": "JSON results file"},
)
def bench_drill(c: Context, gigabytes: float = 1.0, out: str = "reports/bench-drill.json") -> None:
    """Drill dump/restore/verify/RTO on ~1 GB against bare pg_dump + pg_restore -j 2."""
    from pipelines.bench import drill_bench

    raise SystemExit(drill_bench.main(gigabytes=gigabytes, out=out))


@task(
    name="pitr",
    help={"gigabytes": "size of the generated database", "out": "JSON results file"},
)
def bench_pitr(c: Context, gigabytes: float = 0.1, out: str = "reports/bench-pitr.json") -> None:
    """Point-in-time recovery: archive lag (RPO), kill -9 RPO, restore to T vs bare replay."""
    from pipelines.bench import pitr_bench

    raise SystemExit(pitr_bench.main(gigabytes=gigabytes, out=out))


backup_ns = Collection(
    "backup",
    backup_snapshot,
    backup_list,
    backup_prune,
    backup_restore,
    backup_discard,
    backup_daily,
)
drill_ns = Collection("drill", drill_restore, drill_pitr)
bench.add_task(bench_drill)
bench.add_task(bench_pitr)

# --------------------------------------------------------------------------- game days, reports


@task(
    iterable=["scenario"],
    help={
        "env": "staging or production",
        "scenario": "a scenario from pipelines/gameday/scenarios.toml (repeatable; default: all)",
        "target": "local (game days break local processes)",
    },
)
def gameday(
    c: Context, scenario: list[str], env: str = "production", target: str = "local"
) -> None:
    """Break things on purpose under synthetic traffic and score how the system coped."""
    from pipelines.gameday import run as gameday_run

    raise SystemExit(gameday_run.command(env, scenario, target))


@task(name="open", help={"port": "port on 127.0.0.1 (default: a free one)"})
def reports_open(c: Context, port: int = 0) -> None:
    """Serve reports/ on 127.0.0.1 and print the URL (Ctrl-C stops it)."""
    from pipelines.reports import serve

    raise SystemExit(serve.main(ROOT / "reports", port or None))


reports_ns = Collection("reports", reports_open)

ns = Collection(
    test,
    service,
    bench,
    env_ns,
    secrets_ns,
    deploy_ns,
    rollback,
    flags_ns,
    db_ns,
    incident_ns,
    check,
    gates_ns,
    security_ns,
    release_ns,
    backup_ns,
    drill_ns,
    gameday,
    reports_ns,
)

# --------------------------------------------------------------------------- infra (Pulumi)
# Logic in pipelines/infra_ops.py; pulumi is imported only when one of these runs.

_STACK_HELP = "Pulumi stack: staging or production"


@task(name="preview", help={"stack": _STACK_HELP, "policy": "run the infra/policy pack"})
def infra_preview(c: Context, stack: str = "staging", policy: bool = True) -> None:
    """Show what `pulumi up` would change on a stack, checked by the policy pack."""
    from pipelines import infra_ops

    raise SystemExit(infra_ops.main("preview", stack, policy=policy))


@task(
    name="up",
    help={
        "stack": _STACK_HELP,
        "yes": "apply; without it only the preview is shown",
        "image": "release image (ECR URI with digest) to set as drydock:image first",
        "policy": "run the infra/policy pack",
    },
)
def infra_up(
    c: Context, stack: str = "staging", yes: bool = False, image: str = "", policy: bool = True
) -> None:
    """Provision or update a stack (Pulumi Automation API), keeping the deployed release."""
    from pipelines import provision

    raise SystemExit(provision.up(stack, yes=yes, image=image, policy=policy))


@task(name="drift", help={"stack": _STACK_HELP})
def infra_drift(c: Context, stack: str = "staging") -> None:
    """Refresh in preview-only mode; exit 3 when AWS differs from the recorded state."""
    from pipelines import infra_ops

    raise SystemExit(infra_ops.main("drift", stack))


@task(
    name="scan",
    help={
        "stack": "staging, production or all",
        "out": "report directory (default reports/infra-scan)",
    },
)
def infra_scan(c: Context, stack: str = "all", out: str = "") -> None:
    """checkov over each stack's Terraform plan (built under mocks); waivers in security/."""
    from pipelines.deploy.security.iac.scan import command

    raise SystemExit(command(ROOT, stack, out))


ns.add_collection(Collection("infra", infra_preview, infra_up, infra_drift, infra_scan))
