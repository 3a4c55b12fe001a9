"""Secrets: generated, KMS-encrypted, injected by ARN only, readable by exactly one role each."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.harness import RELEASE_CONFIG, Stack, build_stack, walk

pytestmark = pytest.mark.unit

SECRET = "aws:secretsmanager/secret:Secret"
TASK = "aws:ecs/taskDefinition:TaskDefinition"


def _containers(stack: Stack, family: str) -> list[dict[str, Any]]:
    task = next(t for t in stack.of_type(TASK) if t.get("family") == family)
    return json.loads(task.get("containerDefinitions"))


def _secret_policy(stack: Stack, role: str) -> list[dict[str, Any]]:
    policy = stack.one("aws:iam/rolePolicy:RolePolicy", f"service-{role}-secrets")
    execution = stack.one("aws:iam/role:Role", f"service-{role}-execution")
    assert policy.get("role") == execution.id
    return json.loads(policy.get("policy"))["Statement"]


def test_app_secrets_are_generated_and_kms_encrypted(stack: Stack) -> None:
    key = stack.one("aws:kms/key:Key", "secrets-key").state["arn"]
    secrets = {s.get("name"): s for s in stack.of_type(SECRET)}
    assert set(secrets) == {
        f"drydock/{stack.name}/app-db",
        f"drydock/{stack.name}/jwt",
        f"drydock/{stack.name}/metrics",
    }
    assert all(s.get("kmsKeyId") == key for s in secrets.values())
    passwords = stack.of_type("random:index/randomPassword:RandomPassword")
    assert {p.name: p.get("length") for p in passwords} == {
        "secrets-app-db-password": 40,
        "secrets-jwt-key": 64,
        "secrets-metrics-token": 48,
    }
    versions = {
        v.get("secretId") for v in stack.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    }
    assert versions == {s.id for s in secrets.values()}
    app_db = json.loads(
        stack.one("aws:secretsmanager/secretVersion:SecretVersion", "secrets-app-db").get(
            "secretString"
        )
    )
    assert set(app_db) == {"username", "password", "url"}
    for version in stack.of_type("aws:secretsmanager/secretVersion:SecretVersion"):
        assert version.is_secret("secretString"), version.name
    assert app_db["url"].endswith(f":5432/{stack.spec.db_name}?sslmode=require")


def test_tasks_get_secrets_by_arn_only(stack: Stack) -> None:
    arns = {s.state["arn"] for s in stack.of_type(SECRET)} | {stack.outputs["db_master_secret_arn"]}
    values = {
        p.state["result"] for p in stack.of_type("random:index/randomPassword:RandomPassword")
    }
    for family in ("api", "migrate"):
        (container,) = _containers(stack, f"drydock-{stack.name}-{family}")
        for entry in container["secrets"]:
            if entry["valueFrom"] in arns:  # the whole JSON document, current version
                continue
            base, key, stage, version = entry["valueFrom"].rsplit(":", 3)
            assert base in arns
            assert key
            assert not stage
            assert not version
        plain = {e["name"]: e["value"] for e in container["environment"]}
        assert not values & set(plain.values())
        assert not [n for n in plain if "SECRET" in n or "PASSWORD" in n or n == "DATABASE_URL"]
    (api,) = _containers(stack, f"drydock-{stack.name}-api")
    assert {e["name"] for e in api["secrets"]} == {"DATABASE_URL", "JWT_KEYS", "METRICS_TOKEN"}
    jwt = stack.one(SECRET, "secrets-jwt").state["arn"]
    assert {"name": "JWT_KEYS", "valueFrom": jwt} in api["secrets"], "the keyring, whole"
    # The token the service requires in staging and production arrives as a secret, by ARN.
    (token,) = [e for e in api["secrets"] if e["name"] == "METRICS_TOKEN"]
    assert token["valueFrom"] == stack.outputs["metrics_token_secret_arn"] + ":token::"
    assert "METRICS_TOKEN" not in {e["name"] for e in api["environment"]}
    metrics = stack.one("aws:secretsmanager/secretVersion:SecretVersion", "secrets-metrics")
    assert metrics.is_secret("secretString")
    assert set(json.loads(metrics.get("secretString"))) == {"token"}


def _secret_arn(value_from: str) -> str:
    """The secret a `valueFrom` reads: a secret's ARN alone, or ARN:json-key:stage:version."""
    return value_from if value_from.count(":") == 6 else value_from.rsplit(":", 3)[0]


def test_each_execution_role_reads_exactly_its_task_secrets(stack: Stack) -> None:
    for role, family in (("api", "api"), ("migrate", "migrate")):
        (container,) = _containers(stack, f"drydock-{stack.name}-{family}")
        referenced = {_secret_arn(e["valueFrom"]) for e in container["secrets"]}
        read, decrypt = _secret_policy(stack, role)
        assert read["Action"] == "secretsmanager:GetSecretValue"
        assert set(read["Resource"]) == referenced
        assert decrypt["Action"] == "kms:Decrypt"
        assert decrypt["Condition"]["StringEquals"]["kms:ViaService"].startswith("secretsmanager.")
    read_api, _ = _secret_policy(stack, "api")
    assert stack.outputs["db_master_secret_arn"] not in read_api["Resource"]


def test_no_output_carries_a_secret_value(stack: Stack) -> None:
    values = {
        p.state["result"] for p in stack.of_type("random:index/randomPassword:RandomPassword")
    }
    for item in walk(stack.outputs):
        assert not any(v in str(item) for v in values)
    assert not [k for k in stack.outputs if "password" in k or k.endswith("_key")]


def test_rotation_by_generation_changes_the_generated_value() -> None:
    rotated = build_stack("staging", **RELEASE_CONFIG, **{"drydock:jwtKeyGeneration": 2})
    key = rotated.one("random:index/randomPassword:RandomPassword", "secrets-jwt-key")
    assert key.get("keepers") == {"generation": "2"}
    jwt = json.loads(
        rotated.one("aws:secretsmanager/secretVersion:SecretVersion", "secrets-jwt").get(
            "secretString"
        )
    )
    assert jwt["kid"] == "k2"
    rotated = build_stack("staging", **RELEASE_CONFIG, **{"drydock:metricsTokenGeneration": 3})
    token = rotated.one("random:index/randomPassword:RandomPassword", "secrets-metrics-token")
    assert token.get("keepers") == {"generation": "3"}
