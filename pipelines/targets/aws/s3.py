"""The ledger on AWS, in a backups bucket (the deploy lock beside it is lease.py).

One object per entry, `ledger/<env>/<time>-<uuid>.json`, written with `If-None-Match: *`
so an entry is never overwritten; entries are immutable, so a reader fetches each one once.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from pipelines.ledger import entry
from pipelines.targets.aws.common import aws_errors

LEDGER_PREFIX = "ledger"


def _stamp(at: float) -> str:
    """A key-friendly ISO 8601 time that sorts as text."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y%m%dT%H%M%S.%fZ")


class S3Ledger:
    """The append-only history (see pipelines/ledger.py), one S3 object per entry."""

    def __init__(self, bucket: str, prefix: str = LEDGER_PREFIX, *, client: Any) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.s3 = client
        self._cache: dict[str, dict[str, Any]] = {}
        self.name = f"s3://{bucket}/{self.prefix}"  # how aws_errors names it

    @aws_errors("writing the ledger")
    def append(self, kind: str, env: str, **fields: Any) -> dict[str, Any]:
        record = entry(kind, env, **fields)
        key = f"{self.prefix}/{env}/{_stamp(record['at'])}-{uuid.uuid4().hex}.json"
        self.s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=json.dumps(record, default=str, sort_keys=True).encode(),
            ContentType="application/json",
            IfNoneMatch="*",
        )
        self._cache[key] = record
        return record

    def _keys(self, env: str | None) -> list[str]:
        prefix = f"{self.prefix}/{env}/" if env else f"{self.prefix}/"
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".json")]
        return keys

    def _read(self, key: str) -> dict[str, Any] | None:
        if key not in self._cache:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            try:
                self._cache[key] = json.loads(body)
            except ValueError:
                return None  # not ours to interpret; the ledger never writes one
        return self._cache[key]

    @aws_errors("reading the ledger")
    def entries(self, env: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        """Oldest first, across environments when `env` is None."""
        found = [(key, self._read(key)) for key in self._keys(env)]
        ordered = sorted(
            ((float(record.get("at", 0)), key, record) for key, record in found if record),
            key=lambda item: (item[0], item[1]),
        )
        return [r for _, _, r in ordered if kind is None or r.get("kind") == kind]
