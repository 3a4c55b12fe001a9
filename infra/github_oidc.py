"""CI's AWS identity: the stack's deploy role, which only its own GitHub environment assumes.

A job of the deploy workflow that declares `environment: <stack>` gets a GitHub token whose
subject is `repo:<owner>/<name>:environment:<stack>`; this role trusts that subject alone,
through the account's GitHub OIDC provider, and may do what the deploy does (the documents
are in `ci_identity.py`). No stored keys: a job with no environment, a pull request or
another branch's job cannot assume it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

from infra import ci_identity as ci
from infra.names import Names
from infra.spec import EnvironmentSpec


class GithubOidc(pulumi.ComponentResource):
    role_arn: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        spec: EnvironmentSpec,
        task_role_arns: Sequence[pulumi.Input[str]],
        backups_bucket_arn: pulumi.Input[str],
        probes_rule_arn: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("drydock:infra:GithubOidc", name, None, opts)
        repository = spec.github_repository
        if repository is None:  # require_for_aws refuses this before any resource exists
            raise ValueError("drydock:githubRepository is not set")
        n = Names(spec.stack)
        tags = n.tags(spec.environment_class)
        child = pulumi.ResourceOptions(parent=self)
        partition = aws.get_partition_output()
        account = aws.get_caller_identity_output()

        if spec.create_github_oidc_provider:
            # One per account, shared with any other repository or stack that trusts GitHub:
            # a destroy of this stack leaves it in place.
            provider = aws.iam.OpenIdConnectProvider(
                f"{name}-provider",
                url=f"https://{ci.GITHUB_OIDC_HOST}",
                client_id_lists=[ci.AUDIENCE],
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
            )
            provider_arn = provider.arn
        else:
            provider_arn = pulumi.Output.all(partition.partition, account.account_id).apply(
                lambda parts: ci.provider_arn(parts[0], parts[1])
            )

        role = aws.iam.Role(
            f"{name}-deploy",
            name=f"{n.prefix}-github-deploy",
            description=f"deploys {spec.stack} from GitHub Actions ({repository})",
            assume_role_policy=provider_arn.apply(
                lambda arn: json.dumps(ci.trust_policy(arn, repository, spec.stack))
            ),
            max_session_duration=ci.MAX_SESSION_S,
            tags=tags,
            opts=child,
        )

        def policy(parts: list[object]) -> str:
            scope = ci.Scope(
                stack=spec.stack,
                partition=str(parts[0]),
                region=spec.region,
                account=str(parts[1]),
                backups_bucket_arn=str(parts[2]),
                probes_rule_arn=str(parts[3]),
                task_role_arns=tuple(str(arn) for arn in parts[4:]),
            )
            return json.dumps(ci.permissions(scope))

        aws.iam.RolePolicy(
            f"{name}-deploy-permissions",
            role=role.id,
            policy=pulumi.Output.all(
                partition.partition,
                account.account_id,
                backups_bucket_arn,
                probes_rule_arn,
                *task_role_arns,
            ).apply(policy),
            opts=child,
        )
        self.role_arn = role.arn
        self.register_outputs({"role_arn": self.role_arn})
