"""The ledger: an append-only history of what happened to each environment.

Deploys with their step results and p95 baseline, rollbacks, flag changes, snapshots, and
the outcome of steps 1-4 per commit, which steps 5-7 require (deploy/provenance.py).
Each target keeps its own (`Target.ledger()`): locally a JSONL file under the state
directory (`targets/local/ledger.py`), on AWS an object per entry in the backups bucket.
Release notes, the p95 regression rule and `incident.timeline` read it.
"""

from __future__ import annotations

import getpass
import os
import time
from typing import Any, Protocol


class Ledger(Protocol):
    def append(self, kind: str, env: str, **fields: Any) -> dict[str, Any]: ...

    def entries(self, env: str | None = None, kind: str | None = None) -> list[dict[str, Any]]: ...


def actor() -> str:
    for variable in ("GITHUB_ACTOR", "DRYDOCK_ACTOR", "USER"):
        if os.environ.get(variable):
            return os.environ[variable]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def entry(kind: str, env: str, **fields: Any) -> dict[str, Any]:
    return {
        "at": time.time(),
        "at_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "kind": kind,
        "env": env,
        "who": actor(),
        **fields,
    }
