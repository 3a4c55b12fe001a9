"""CI's AWS identity: each stack's deploy role is assumed only from its own GitHub
environment, and may do exactly what the README lists, on the stack's own resources."""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import replace
from typing import Any

import pytest

from infra import outputs
from infra.policy.rules import RULES, evaluate
from infra.spec import SpecError, defaults, from_pulumi_config, require_for_aws
from tests.infra.harness import (
    ACCOUNT,
    CERTIFICATE,
    RELEASE_CONFIG,
    REPOSITORY,
    ROOT,
    Registered,
    Stack,
    build_stack,
)

pytestmark = pytest.mark.unit

ROLE = "aws:iam/role:Role"
GITHUB = "token.actions.githubusercontent.com"
PROVIDER = "aws:iam/openIdConnectProvider:OpenIdConnectProvider"


def deploy_role(stack: Stack) -> Registered:
    return stack.one(ROLE, "github-oidc-deploy")


def trust(stack: Stack) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(deploy_role(stack).get("assumeRolePolicy"))
    return document


def statements(stack: Stack) -> list[dict[str, Any]]:
    policy = stack.one("aws:iam/rolePolicy:RolePolicy", "github-oidc-deploy-permissions")
    assert policy.get("role") == deploy_role(stack).id
    found: list[dict[str, Any]] = json.loads(policy.get("policy"))["Statement"]
    return found


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def token(
    environment: str | None = None,
    repository: str = REPOSITORY,
    aud: str = "sts.amazonaws.com",
    other: str = "ref:refs/heads/main",
) -> dict[str, str]:
    """The claims GitHub signs for a job: `environment:<name>` when it declares one."""
    context = f"environment:{environment}" if environment else other
    return {"sub": f"repo:{repository}:{context}", "aud": aud}


def admits(document: dict[str, Any], claims: dict[str, str]) -> bool:
    """IAM's answer for a web identity token with `claims`: some Allow statement whose every
    condition holds (StringEquals and StringLike, the operators trust policies use)."""

    def holds(operator: str, key: str, expected: Any) -> bool:
        claim = claims.get(key.removeprefix(f"{GITHUB}:"))
        if claim is None:
            return False
        if operator == "StringEquals":
            return claim in listed(expected)
        if operator == "StringLike":
            return any(fnmatch.fnmatchcase(claim, pattern) for pattern in listed(expected))
        raise AssertionError(f"condition operator {operator} is not modelled here")

    return any(
        s["Effect"] == "Allow"
        and s["Action"] == "sts:AssumeRoleWithWebIdentity"
        and all(
            holds(operator, key, expected)
            for operator, keys in s.get("Condition", {}).items()
            for key, expected in keys.items()
        )
        for s in document["Statement"]
    )


def readme_permissions() -> tuple[set[str], set[str]]:
    """The README's list of the deploying identity's actions, and those it marks \\* (granted
    on every resource): a bare action takes the service of the one before it."""
    text = (ROOT / "README.md").read_text()
    start = text.index("The deploying identity needs these permissions")
    end = text.index("\n\n", text.index("\n- ", start))
    actions: set[str] = set()
    unscoped: set[str] = set()
    service = ""
    for code, marked in re.findall(r"`([^`]+)`(\\\*)?", text[start:end]):
        found = re.fullmatch(r"(?:([a-z0-9-]+):)?([A-Z][A-Za-z]+)", code)
        if found is None:
            continue  # a path or a name, not an action
        service = found.group(1) or service
        actions.add(f"{service}:{found.group(2)}")
        if marked:
            unscoped.add(f"{service}:{found.group(2)}")
    return actions, unscoped


def test_the_role_trusts_exactly_its_own_environment_and_sts(stack: Stack) -> None:
    role = deploy_role(stack)
    assert role.get("name") == f"drydock-{stack.name}-github-deploy"
    assert stack.outputs[outputs.GITHUB_DEPLOY_ROLE_ARN] == role.state["arn"]
    (statement,) = trust(stack)["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"] == {
        "Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
    }
    assert statement["Condition"] == {
        "StringEquals": {
            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            "token.actions.githubusercontent.com:sub": (
                f"repo:acme/drydock:environment:{stack.name}"
            ),
        }
    }
    # Sessions outlast the longest deploy job (the workflow test checks each job's request).
    assert role.get("maxSessionDuration") == 4 * 3600


def test_no_other_environment_branch_pull_request_or_repository_gets_in(
    staging: Stack, production: Stack
) -> None:
    roles = {"staging": trust(staging), "production": trust(production)}
    assert admits(roles["staging"], token("staging"))
    assert admits(roles["production"], token("production"))
    assert not admits(roles["staging"], token("production"))
    assert not admits(roles["production"], token("staging"))
    for document in roles.values():
        assert not admits(document, token())  # a job on main with no environment
        assert not admits(document, token(other="pull_request"))
        assert not admits(document, token("production", repository="acme/drydock-fork"))
        assert not admits(document, token("production", repository="Acme/Drydock"))
        assert not admits(document, token("production", aud="https://github.com/acme"))
        assert not admits(document, {"aud": "sts.amazonaws.com"})  # no subject at all


def test_the_permissions_are_exactly_the_readmes_list(stack: Stack) -> None:
    actions, unscoped = readme_permissions()
    granted = {a for s in statements(stack) for a in listed(s["Action"])}
    assert granted == actions
    on_anything = {a for s in statements(stack) if s["Resource"] == "*" for a in s["Action"]}
    assert on_anything == unscoped
    assert all(
        s["Effect"] == "Allow" and "*" not in "".join(s["Action"]) for s in statements(stack)
    )


def test_scoped_permissions_name_only_the_stacks_own_resources(stack: Stack) -> None:
    other = "production" if stack.name == "staging" else "staging"
    own = [
        f"drydock-{stack.name}",
        f"drydock/{stack.name}/",
        stack.one("aws:s3/bucket:Bucket", "backups-bucket").state["arn"],
    ]
    probes = stack.one("aws:lb/listenerRule:ListenerRule", "ingress-probes").state["arn"]
    own.append(probes)
    by_sid = {s["Sid"]: s for s in statements(stack)}
    for sid, statement in by_sid.items():
        if "Ledger" in sid:
            continue  # production's bucket: the test below
        for resource in listed(statement["Resource"]):
            assert other not in resource, (sid, resource)
            # "*": IAM scopes none of its actions; roles and keys are checked below.
            if resource != "*" and sid != "PassItsTaskRolesToEcsOnly":
                assert resource.endswith(":key/*") or any(m in resource for m in own), resource
    roles = {
        stack.one(ROLE, f"service-{r}").state["arn"]
        for r in ("api-execution", "migrate-execution", "task")
    }
    passing = by_sid["PassItsTaskRolesToEcsOnly"]
    assert set(passing["Resource"]) == roles
    assert passing["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }
    assert by_sid["ProbesFollowTheProductionRule"]["Resource"] == probes
    assert stack.outputs[outputs.PROBES_RULE_ARN] == probes
    run = by_sid["RunItsMigrateTaskInItsCluster"]
    assert run["Resource"].endswith(f":task-definition/drydock-{stack.name}-migrate:*")
    assert run["Condition"]["ArnEquals"]["ecs:cluster"].endswith(f":cluster/drydock-{stack.name}")
    keys = by_sid["TheBucketKeysThroughS3Only"]["Condition"]
    assert keys["StringEquals"] == {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}
    aliases = {a.get("name") for a in stack.of_type("aws:kms/alias:Alias")}
    assert f"alias/drydock-{stack.name}-backups" in aliases
    assert set(keys["ForAnyValue:StringEquals"]["kms:ResourceAliases"]) == {
        f"alias/drydock-{stack.name}-backups",
        "alias/drydock-production-backups",
    }


def test_staging_reaches_production_only_to_read_and_append_its_ledger(
    staging: Stack, production: Stack
) -> None:
    bucket = production.one("aws:s3/bucket:Bucket", "backups-bucket").state["arn"]
    reaching = {
        s["Sid"]: s
        for s in statements(staging)
        if any("production" in str(r) for r in listed(s["Resource"]))
    }
    assert set(reaching) == {"ListTheLedger", "ReadTheLedger", "AppendItsEnvironmentToTheLedger"}
    listing, reading = reaching["ListTheLedger"], reaching["ReadTheLedger"]
    appending = reaching["AppendItsEnvironmentToTheLedger"]
    assert fnmatch.fnmatchcase(bucket, listing["Resource"])  # the name prefix finds it
    assert listing["Condition"]["StringLike"] == {"s3:prefix": "ledger/*"}
    assert fnmatch.fnmatchcase(f"{bucket}/ledger/staging/x.json", appending["Resource"])
    assert not fnmatch.fnmatchcase(f"{bucket}/ledger/production/x.json", appending["Resource"])
    assert not fnmatch.fnmatchcase(f"{bucket}/locks/production.json", reading["Resource"])
    for statement in reaching.values():
        assert statement["Condition"]["StringEquals"] == {"aws:ResourceAccount": ACCOUNT}
    # Production's own role finds the ledger in its own bucket, by ARN.
    own = {s["Sid"]: s for s in statements(production)}
    assert own["ReadTheLedger"]["Resource"] == f"{bucket}/ledger/*"
    assert "ListTheLedger" not in own


def test_the_provider_is_created_only_where_asked(staging: Stack) -> None:
    assert staging.of_type(PROVIDER) == []
    created = build_stack("staging", **RELEASE_CONFIG, **{"drydock:createGithubOidcProvider": True})
    provider = created.one(PROVIDER)
    assert provider.get("url") == "https://token.actions.githubusercontent.com"
    assert provider.get("clientIdLists") == ["sts.amazonaws.com"]
    assert provider.retain_on_delete  # one per account; other roles may trust it
    (statement,) = trust(created)["Statement"]
    assert statement["Principal"] == {"Federated": provider.state["arn"]}


@pytest.mark.parametrize(
    "value",
    ["acme", "acme/*", "acme/drydock:environment:production", "-acme/drydock", "acme/..", "a/b/c"],
)
def test_a_bad_repository_is_refused_with_the_key_and_the_form(value: str) -> None:
    with pytest.raises(SpecError) as caught:
        from_pulumi_config({"drydock:githubRepository": value}, "staging")
    message = str(caught.value)
    assert f"drydock:githubRepository={value!r} is not valid" in message
    assert "owner/name" in message


def test_aws_needs_the_repository_before_any_resource() -> None:
    spec = from_pulumi_config({"drydock:githubRepository": "Acme-Corp/drydock.api_2"}, "staging")
    assert spec.github_repository == "Acme-Corp/drydock.api_2"
    with pytest.raises(SpecError) as caught:
        require_for_aws(
            replace(
                defaults("production"),
                certificate_arn=CERTIFICATE,
                alarm_emails=("oncall@example.com",),
                dr_region="eu-central-1",
            )
        )
    assert str(caught.value) == (
        "defaults for production: drydock:githubRepository is required to provision AWS: the "
        "stack's deploy role trusts only that repository's GitHub environment 'production'; "
        "allowed: owner/name (pulumi config set drydock:githubRepository acme/drydock "
        "--stack production)"
    )
    with pytest.raises(SpecError, match="drydock:githubRepository is required"):
        build_stack("staging", **{"drydock:certificateArn": CERTIFICATE})


def test_the_policy_pack_refuses_the_role_once_its_subject_is_a_pattern(staging: Stack) -> None:
    (rule,) = [r for r in RULES if r.name == "oidc-trust-exact"]
    view = staging.policy_view()
    assert evaluate(view, [rule]) == []
    loosened = [
        replace(
            res,
            props={
                **res.props,
                "assumeRolePolicy": res.props["assumeRolePolicy"].replace(
                    ":environment:staging", ":*"
                ),
            },
        )
        if res.name == "github-oidc-deploy"
        else res
        for res in view
    ]
    (violation,) = evaluate(loosened, [rule])
    assert violation.resource == "github-oidc-deploy"
    assert f"{GITHUB}:sub with StringEquals and exact values only" in violation.message
