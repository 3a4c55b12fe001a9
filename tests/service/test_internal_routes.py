"""/api/_internal outside development: metrics and flags only with METRICS_TOKEN, readiness
details only with it, and the verdict alone for everyone else."""

from __future__ import annotations

import httpx
import pytest

from pipelines.host.ports import free_port
from service.app import DrydockAPI
from tests.service.conftest import INTERNAL, METRICS_TOKEN, AppFactory, client_for

pytestmark = pytest.mark.integration

CLOSED = ("/api/_internal/metrics", "/api/_internal/flags")
BEARERS = {
    "no header": {},
    "another token": {"Authorization": "Bearer " + "x" * len(METRICS_TOKEN)},
    "a prefix of the token": {"Authorization": f"Bearer {METRICS_TOKEN[:-1]}"},
    "an empty bearer": {"Authorization": "Bearer "},
    "the token in another scheme": {"Authorization": f"Basic {METRICS_TOKEN}"},
}


async def answers(app: DrydockAPI, path: str, headers: dict[str, str]) -> httpx.Response:
    async with client_for(app) as client:
        return await client.get(path, headers=headers)


@pytest.mark.parametrize("env", ["test", "staging", "production"])
async def test_metrics_and_flags_need_the_token_outside_development(
    app_factory: AppFactory, env: str
) -> None:
    app = await app_factory(env=env)
    for path in CLOSED:
        for why, headers in BEARERS.items():
            response = await answers(app, path, headers)
            assert response.status_code == 401, (path, why)
            assert response.headers["www-authenticate"] == 'Bearer realm="internal"'
            assert "drydock_" not in response.text and "ORDERS_ENABLED" not in response.text
        assert (await answers(app, path, INTERNAL)).status_code == 200, path


async def test_without_a_configured_token_nobody_reads_them_outside_development(
    app_factory: AppFactory,
) -> None:
    app = await app_factory(env="test", metrics_token="")
    for path in CLOSED:
        for headers in (*BEARERS.values(), INTERNAL):
            assert (await answers(app, path, headers)).status_code == 401, (path, headers)


async def test_development_without_a_token_is_open_and_with_one_is_closed(
    app_factory: AppFactory,
) -> None:
    laptop = await app_factory(env="development", metrics_token="")
    guarded = await app_factory(env="development")
    for path in CLOSED:
        assert (await answers(laptop, path, {})).status_code == 200, path
        assert (await answers(guarded, path, {})).status_code == 401, path
    assert "checks" in (await answers(laptop, "/api/_internal/ready", {})).json()


@pytest.mark.parametrize("draining", [False, True], ids=["ready", "unready"])
async def test_readiness_tells_the_verdict_to_all_and_the_details_to_the_token(
    app: DrydockAPI, draining: bool
) -> None:
    app.drydock.draining = draining
    code, verdict = (503, "unready") if draining else (200, "ready")
    for why, headers in BEARERS.items():
        response = await answers(app, "/api/_internal/ready", headers)
        assert (response.status_code, response.json()) == (code, {"status": verdict}), why
    detailed = await answers(app, "/api/_internal/ready", INTERNAL)
    assert detailed.status_code == code
    body = detailed.json()
    assert body["status"] == verdict
    assert set(body["checks"]) == {"draining", "database", "schema"}
    assert body["checks"]["schema"]["current"] == body["checks"]["schema"]["expected"]
    if draining:
        assert body["checks"]["draining"]["reason"].startswith("shutting down")


async def test_an_unreachable_database_is_explained_only_to_the_token(
    app_factory: AppFactory,
) -> None:
    # Nothing listens on a free port: the pool cannot connect.
    app = await app_factory(database_url=f"postgresql://app:pw@127.0.0.1:{free_port()}/none")
    anonymous = await answers(app, "/api/_internal/ready", {})
    assert (anonymous.status_code, anonymous.json()) == (503, {"status": "unready"})
    detailed = (await answers(app, "/api/_internal/ready", INTERNAL)).json()
    assert detailed["checks"]["database"]["ok"] is False
    assert detailed["checks"]["database"]["reason"].startswith("database unreachable")
