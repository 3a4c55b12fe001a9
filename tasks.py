"""The invoke surface. Collections and thin tasks only: the logic lives in pipelines/.

Heavy libraries (pulumi, boto3, the service stack) are imported inside task bodies so that
`invoke --list` stays fast.
"""

from __future__ import annotations

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import task

# --------------------------------------------------------------------------- quality gates


@task(help={"coverage": "minimum coverage of service/ in percent"})
def test(c: Context, coverage: int = 90, k: str = "", markers: str = "") -> None:
    """Lint, type-check and run the whole test suite with coverage."""
    c.run("ruff check .", echo=True, pty=False)
    c.run("ruff format --check service pipelines infra tasks.py tests", echo=True)
    c.run("mypy", echo=True)
    select = (f" -k {k!r}" if k else "") + (f" -m {markers!r}" if markers else "")
    gate = f" --cov-fail-under={coverage}" if not (k or markers) else ""
    c.run(
        f"pytest --cov --cov-report=term --cov-report=xml:reports/coverage.xml{gate}{select}",
        echo=True,
        pty=False,
    )


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
    from pipelines import environments
    from pipelines.targets.base import TargetError

    try:
        environments.up(env)
    except TargetError as exc:
        raise SystemExit(f"env.up: {exc}") from None


@task(name="status", help={**ENV_HELP, "json": "print JSON instead of a table"})
def env_status(c: Context, env: str = "all", json: bool = False) -> None:
    """Processes, release, replica health, alarm states, database size and ports."""
    from pipelines import environments

    print(environments.status(env, as_json=json))


@task(name="logs", help={"env": "staging or production", "lines": "lines per file"})
def env_logs(c: Context, env: str = "staging", lines: int = 20) -> None:
    """The newest lines of every process log of one environment."""
    from pipelines import environments

    for path in environments.log_files(env):
        print(f"==> {path} <==")
        print("\n".join(environments.tail(path, lines)))


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
    from pipelines import environments

    if purge_data and not yes:
        answer = input(f"Delete all data of {env} (databases, secrets, logs)? Type 'purge': ")
        if answer.strip() != "purge":
            raise SystemExit("env.down: not confirmed; nothing was stopped or deleted")
    environments.down(env, purge_data=purge_data)


env_ns = Collection("env", env_up, env_status, env_logs, env_down)


@task(
    name="rotate",
    help={"env": "staging or production", "name": "jwt, metrics, db-app, or a secret's full name"},
)
def secrets_rotate(c: Context, env: str, name: str) -> None:
    """Rotate a secret (runbook section 12) and roll the replicas onto it."""
    from pipelines import environments
    from pipelines.targets.base import TargetError

    try:
        print(environments.rotate_secret(env, name))
    except TargetError as exc:
        raise SystemExit(f"secrets.rotate: {exc}") from None


secrets_ns = Collection("secrets", secrets_rotate)

# --------------------------------------------------------------------------- benchmarks


@task(name="service", help={"duration": "seconds per scenario", "connections": "wrk connections"})
def bench_service(c: Context, duration: float = 10, connections: int = 32) -> None:
    """Service throughput and latency against bare Starlette references (needs wrk)."""
    from pipelines.bench import service_bench

    raise SystemExit(service_bench.run(duration=duration, connections=connections))


bench = Collection("bench", bench_service)

ns = Collection(test, service, bench, env_ns, secrets_ns)

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
    """Provision or update a stack through the Pulumi Automation API."""
    from pipelines import infra_ops

    raise SystemExit(infra_ops.main("up", stack, yes=yes, image=image, policy=policy))


@task(name="drift", help={"stack": _STACK_HELP})
def infra_drift(c: Context, stack: str = "staging") -> None:
    """Refresh in preview-only mode; exit 3 when AWS differs from the recorded state."""
    from pipelines import infra_ops

    raise SystemExit(infra_ops.main("drift", stack))


ns.add_collection(Collection("infra", infra_preview, infra_up, infra_drift))
