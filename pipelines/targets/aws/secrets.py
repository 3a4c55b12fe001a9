"""The environment's secrets on AWS: Secrets Manager, with the local store's semantics.

`current` and `previous` are Secrets Manager's AWSCURRENT and AWSPREVIOUS stages. A
rotation keeps the previous value readable until `retire()` takes its stage away, and is
refused while a previous value is still staged, as the local store refuses it. A short
name maps to `drydock/<env>/<name>`; an ARN or a full name is used as it is.

The signing key is one JSON secret holding the current key and the previous one with its
cutoff (`targets/signing_keys.py`), so its rotation writes a new version of the whole
object and Secrets Manager's AWSPREVIOUS stage plays no part in it.
"""

from __future__ import annotations

import secrets as pysecrets
from collections.abc import Callable
from typing import Any

from infra.names import PROJECT
from pipelines.targets.aws.common import client_error, error_code
from pipelines.targets.base import TargetError
from pipelines.targets.signing_keys import Keyring

STAGES = {"current": "AWSCURRENT", "previous": "AWSPREVIOUS"}


class AwsSecrets:
    def __init__(self, env: str, client: Any) -> None:
        self.env = env
        self.sm = client

    def secret_id(self, name: str) -> str:
        if name.startswith("arn:") or "/" in name:
            return name
        return f"{PROJECT}/{self.env}/{name}"

    def _versions(self, name: str) -> dict[str, str]:
        """Stage -> version id."""
        described = self.sm.describe_secret(SecretId=self.secret_id(name))
        return {
            stage: version
            for version, stages in described.get("VersionIdsToStages", {}).items()
            for stage in stages
        }

    def get(self, name: str, stage: str = "current") -> str:
        if stage not in STAGES:
            raise TargetError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
        try:
            value = self.sm.get_secret_value(
                SecretId=self.secret_id(name), VersionStage=STAGES[stage]
            )
        except client_error() as exc:
            raise TargetError(
                f"{self.env}: cannot read {stage} value of secret {self.secret_id(name)}: "
                f"{error_code(exc) or exc}"
            ) from None
        return str(value["SecretString"])

    def put(self, name: str, value: str) -> str:
        """Create a secret; the same value again is a no-op, a different one is refused."""
        try:
            created = self.sm.create_secret(Name=self.secret_id(name), SecretString=value)
            return str(created["VersionId"])
        except client_error() as exc:
            if error_code(exc) != "ResourceExistsException":
                raise
        if self.get(name) != value:
            raise TargetError(
                f"secret {self.secret_id(name)} exists with a different value; use rotate()"
            )
        return self._versions(name)["AWSCURRENT"]

    def ensure(self, name: str, generator: Callable[[], str]) -> str:
        try:
            return self.get(name)
        except TargetError:
            self.put(name, generator())
            return self.get(name)

    def rotate(self, name: str, new_value: str) -> str:
        versions = self._versions(name)
        if "AWSPREVIOUS" in versions:
            raise TargetError(
                f"secret {self.secret_id(name)} still has a previous version "
                f"({versions['AWSPREVIOUS']}); once nothing uses it, retire it, then rotate"
            )
        # Secrets Manager moves AWSPREVIOUS to the version that was current.
        put = self.sm.put_secret_value(
            SecretId=self.secret_id(name),
            SecretString=new_value,
            ClientRequestToken=pysecrets.token_hex(16),
        )
        return str(put["VersionId"])

    def retire(self, name: str) -> str | None:
        previous = self._versions(name).get("AWSPREVIOUS")
        if previous is None:
            return None
        self.sm.update_secret_version_stage(
            SecretId=self.secret_id(name), VersionStage="AWSPREVIOUS", RemoveFromVersionId=previous
        )
        return previous

    def signing_keys(self, name: str) -> Keyring:
        return Keyring.parse(self.get(name), f"{self.env}: secret {self.secret_id(name)}")

    def put_signing_keys(self, name: str, keys: Keyring) -> str:
        """`keys` as the new AWSCURRENT version; returns its version id."""
        put = self.sm.put_secret_value(
            SecretId=self.secret_id(name),
            SecretString=keys.to_json(),
            ClientRequestToken=pysecrets.token_hex(16),
        )
        return str(put["VersionId"])
