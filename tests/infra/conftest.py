"""Both stacks, built once per session under Pulumi's mocks; config reset around every test."""

from __future__ import annotations

from collections.abc import Iterator

import pulumi
import pytest

from tests.infra.harness import PRODUCTION_CONFIG, RELEASE_CONFIG, Stack, build_stack


@pytest.fixture(autouse=True)
def _fresh_pulumi_config() -> Iterator[None]:
    pulumi.runtime.set_all_config({}, secret_keys=[])
    yield
    pulumi.runtime.set_all_config({}, secret_keys=[])


@pytest.fixture(scope="session")
def staging() -> Stack:
    return build_stack("staging", **RELEASE_CONFIG)


@pytest.fixture(scope="session")
def production() -> Stack:
    return build_stack("production", **PRODUCTION_CONFIG)


@pytest.fixture(scope="session", params=["staging", "production"])
def stack(request: pytest.FixtureRequest, staging: Stack, production: Stack) -> Stack:
    return {"staging": staging, "production": production}[request.param]
