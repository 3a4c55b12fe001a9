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
    c.run(f"pytest --cov --cov-report=term --cov-report=xml:reports/coverage.xml{gate}{select}",
          echo=True, pty=False)


# --------------------------------------------------------------------------- the service


@task(help={"port": "HTTP port on 127.0.0.1", "pg_port": "PostgreSQL port (default: free)",
            "keep_db": "leave PostgreSQL running on exit"})
def run(c: Context, port: int = 8000, pg_port: int = 0, keep_db: bool = False) -> None:
    """Serve the API on an embedded PostgreSQL 18 with migrations applied."""
    from pipelines import devserver

    devserver.run(port=port, pg_port=pg_port or None, keep_db=keep_db)


service = Collection("service", run)

# --------------------------------------------------------------------------- benchmarks


@task(name="service", help={"duration": "seconds per scenario", "connections": "wrk connections"})
def bench_service(c: Context, duration: float = 10, connections: int = 32) -> None:
    """Service throughput and latency against bare Starlette references (needs wrk)."""
    from pipelines.bench import service_bench

    raise SystemExit(service_bench.run(duration=duration, connections=connections))


bench = Collection("bench", bench_service)

ns = Collection(test, service, bench)

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
