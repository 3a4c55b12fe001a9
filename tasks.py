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


ns = Collection(test)
