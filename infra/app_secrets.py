"""Secrets: the app's database credentials, the JWT signing key and the token of the internal
routes (METRICS_TOKEN), in Secrets Manager.

Values are generated with pulumi_random (they live in Pulumi state only as secrets) and
encrypted with a customer-managed KMS key. Tasks receive them as ECS `secrets` by ARN.

The JWT secret is a JSON keyring (`kid`, `secret`, and after a routine rotation
`previous_kid`, `previous_secret`, `previous_not_after`); Pulumi writes its first version
only. Rotation (runbook §12): `invoke secrets.rotate --target aws --name jwt
[--compromised]` writes new versions. Bumping `drydock:jwtKeyGeneration` makes Pulumi
replace the keyring with a fresh key and no previous one, a compromise rotation, and
`drydock:dbPasswordGeneration` the database password and `drydock:metricsTokenGeneration`
the internal routes' token; see docs/RUNBOOK.md for the steps.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from infra._aws import kms_key
from infra.database import PORT, Database
from infra.names import Names
from infra.spec import EnvironmentSpec


class Secrets(pulumi.ComponentResource):
    key_arn: pulumi.Output[str]
    app_db_arn: pulumi.Output[str]
    jwt_arn: pulumi.Output[str]
    metrics_arn: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        spec: EnvironmentSpec,
        database: Database,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("drydock:infra:Secrets", name, None, opts)
        names = Names(spec.stack)
        tags = names.tags(spec.environment_class)
        child = pulumi.ResourceOptions(parent=self)
        # Production keeps a deleted secret recoverable for the longest window AWS allows.
        recovery_days = 30 if spec.is_production else 7
        secret_output = pulumi.ResourceOptions(
            parent=self, additional_secret_outputs=["secretString"]
        )

        key = kms_key(
            f"{name}-key",
            f"{names.prefix}-secrets",
            f"{names.prefix}: application secrets",
            tags,
            child,
        )
        # Alphanumeric only: the password is embedded in a URL without escaping.
        db_password = random.RandomPassword(
            f"{name}-app-db-password",
            length=40,
            special=False,
            keepers={"generation": str(spec.db_password_generation)},
            opts=child,
        )
        jwt_key = random.RandomPassword(
            f"{name}-jwt-key",
            length=64,
            special=False,
            keepers={"generation": str(spec.jwt_key_generation)},
            opts=child,
        )

        app_db = aws.secretsmanager.Secret(
            f"{name}-app-db",
            name=names.app_db_secret,
            description=f"{names.prefix}: the service's PostgreSQL role ({names.db_app_user})",
            kms_key_id=key.arn,
            recovery_window_in_days=recovery_days,
            tags=tags,
            opts=child,
        )
        url = pulumi.Output.format(
            "postgresql://{0}:{1}@{2}:{3}/{4}?sslmode=require",
            names.db_app_user,
            db_password.result,
            database.address,
            PORT,
            spec.db_name,
        )
        aws.secretsmanager.SecretVersion(
            f"{name}-app-db",
            secret_id=app_db.id,
            # Secret already: it is built from the random password's secret result.
            secret_string=pulumi.Output.json_dumps(
                {"username": names.db_app_user, "password": db_password.result, "url": url}
            ),
            opts=secret_output,
        )

        jwt = aws.secretsmanager.Secret(
            f"{name}-jwt",
            name=names.jwt_secret,
            description=f"{names.prefix}: JWT signing key",
            kms_key_id=key.arn,
            recovery_window_in_days=recovery_days,
            tags=tags,
            opts=child,
        )
        aws.secretsmanager.SecretVersion(
            f"{name}-jwt",
            secret_id=jwt.id,
            secret_string=pulumi.Output.json_dumps(
                {"kid": f"k{spec.jwt_key_generation}", "secret": jwt_key.result}
            ),
            opts=secret_output,
        )

        # The service refuses to start in staging and production without it (>= 32 bytes).
        metrics_token = random.RandomPassword(
            f"{name}-metrics-token",
            length=48,
            special=False,
            keepers={"generation": str(spec.metrics_token_generation)},
            opts=child,
        )
        metrics = aws.secretsmanager.Secret(
            f"{name}-metrics",
            name=names.metrics_secret,
            description=f"{names.prefix}: bearer token of the service's internal routes",
            kms_key_id=key.arn,
            recovery_window_in_days=recovery_days,
            tags=tags,
            opts=child,
        )
        aws.secretsmanager.SecretVersion(
            f"{name}-metrics",
            secret_id=metrics.id,
            secret_string=pulumi.Output.json_dumps({"token": metrics_token.result}),
            opts=secret_output,
        )

        self.key_arn = key.arn
        self.app_db_arn = app_db.arn
        self.jwt_arn = jwt.arn
        self.metrics_arn = metrics.arn
        self.register_outputs(
            {"app_db_arn": self.app_db_arn, "jwt_arn": self.jwt_arn, "metrics_arn": metrics.arn}
        )
