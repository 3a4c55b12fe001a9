"""The security policy (`security/policy.yaml`) and the review that applies it to findings.

A policy has one block per environment (`local`, `staging`, `production`), each merged over
`defaults`, and one list of waivers. Everything that is not waived and at or above the
threshold blocks. Problems with the scan itself (missing, stale, unaudited) are findings too,
and no waiver can hide them; only the `local` policy may record "unaudited" as a warning.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

SEVERITIES = ("low", "medium", "high", "critical")
CONFIDENCES = ("low", "medium", "high")
ARTIFACTS = ("pip-audit", "bandit", "osv-scanner", "checkov")
WAIVER_FIELDS = ("id", "owner", "reason", "expires")
WAIVER_OPTIONAL = ("environments",)  # the stacks (policy environments) a waiver covers
NEVER_DOWNGRADES = ("production",)
_ENV_KEYS = {
    "severity_threshold",
    "unknown_severity",
    "bandit_min_confidence",
    "max_artifact_age_hours",
    "required_artifacts",
    "unaudited",
    "infra_failures",
}


class PolicyError(ValueError):
    """The policy file is wrong; the message names the file, the key and what is allowed."""


@dataclass(frozen=True)
class Waiver:
    id: str
    owner: str
    reason: str
    expires: dt.date
    environments: tuple[str, ...] = ()  # empty: every environment

    def expired(self, today: dt.date) -> bool:
        return today > self.expires

    def covers(self, env: str) -> bool:
        return not self.environments or env in self.environments

    @property
    def key(self) -> str:
        scope = f" ({', '.join(self.environments)})" if self.environments else ""
        return f"{self.id}{scope}"


@dataclass(frozen=True)
class EnvPolicy:
    name: str
    severity_threshold: str = "medium"
    unknown_severity: str = "high"  # pip-audit reports no severity at all
    bandit_min_confidence: str = "medium"
    max_artifact_age_hours: float = 24.0
    required_artifacts: tuple[str, ...] = ("pip-audit", "bandit")
    unaudited: str = "block"  # or "warn"
    infra_failures: str = "block"  # a failed checkov check of this stack: block or "warn"

    def blocks(self, severity: str) -> bool:
        return SEVERITIES.index(severity) >= SEVERITIES.index(self.severity_threshold)


@dataclass(frozen=True)
class Policy:
    environments: Mapping[str, EnvPolicy]
    waivers: tuple[Waiver, ...]
    source: str = "security/policy.yaml"

    def for_env(self, name: str) -> EnvPolicy:
        if name not in self.environments:
            raise PolicyError(
                f"{self.source}: no policy for environment {name!r}; "
                f"defined: {', '.join(self.environments)}"
            )
        return self.environments[name]

    def waivers_in_force(self, today: dt.date) -> list[Waiver]:
        return [w for w in self.waivers if not w.expired(today)]


@dataclass(frozen=True)
class Finding:
    kind: str  # vulnerability, code, infra, unaudited, missing, stale, expired-waiver, scan-error
    source: str  # pip-audit, osv-scanner, bandit, policy
    id: str
    severity: str  # one of SEVERITIES, or "n/a" for findings about the scan itself
    message: str
    action: str  # what to do about it
    aliases: tuple[str, ...] = ()
    waivable: bool = True
    stack: str = ""  # an infra finding's stack: its own policy block and waivers apply

    def line(self) -> str:
        where = f" [{self.stack}]" if self.stack else ""
        return (
            f"[{self.source}]{where} {self.id} ({self.severity}): {self.message} -> {self.action}"
        )


@dataclass
class Review:
    env: str
    blocking: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    waived: list[tuple[Finding, Waiver]] = field(default_factory=list)
    below_threshold: list[Finding] = field(default_factory=list)
    unused_waivers: list[Waiver] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.blocking

    def as_dict(self) -> dict[str, Any]:
        def item(f: Finding) -> dict[str, Any]:
            return {k: v for k, v in f.__dict__.items() if k != "waivable"}

        return {
            "env": self.env,
            "ok": self.ok,
            "blocking": [item(f) for f in self.blocking],
            "warnings": [item(f) for f in self.warnings],
            "waived": [{**item(f), "waiver": waiver_dict(w)} for f, w in self.waived],
            "below_threshold": [item(f) for f in self.below_threshold],
            "unused_waivers": [w.key for w in self.unused_waivers],
        }


def waiver_dict(waiver: Waiver) -> dict[str, Any]:
    described: dict[str, Any] = {
        "id": waiver.id,
        "owner": waiver.owner,
        "reason": waiver.reason,
        "expires": waiver.expires.isoformat(),
    }
    if waiver.environments:
        described["environments"] = list(waiver.environments)
    return described


def _choice(value: Any, allowed: Sequence[str], where: str) -> str:
    text = str(value).lower()
    if text not in allowed:
        raise PolicyError(f"{where}={value!r} is not allowed; use one of {', '.join(allowed)}")
    return text


def _env_policy(name: str, raw: Mapping[str, Any], where: str) -> EnvPolicy:
    unknown = set(raw) - _ENV_KEYS
    if unknown:
        raise PolicyError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_ENV_KEYS))}"
        )
    policy = EnvPolicy(name)
    values: dict[str, Any] = {}
    if "severity_threshold" in raw:
        values["severity_threshold"] = _choice(
            raw["severity_threshold"], SEVERITIES, f"{where}.severity_threshold"
        )
    if "unknown_severity" in raw:
        values["unknown_severity"] = _choice(
            raw["unknown_severity"], SEVERITIES, f"{where}.unknown_severity"
        )
    if "bandit_min_confidence" in raw:
        values["bandit_min_confidence"] = _choice(
            raw["bandit_min_confidence"], CONFIDENCES, f"{where}.bandit_min_confidence"
        )
    if "max_artifact_age_hours" in raw:
        hours = raw["max_artifact_age_hours"]
        if isinstance(hours, bool) or not isinstance(hours, int | float) or hours <= 0:
            raise PolicyError(f"{where}.max_artifact_age_hours={hours!r} must be a number > 0")
        values["max_artifact_age_hours"] = float(hours)
    if "required_artifacts" in raw:
        required = raw["required_artifacts"]
        if not isinstance(required, list):
            raise PolicyError(f"{where}.required_artifacts must be a list")
        values["required_artifacts"] = tuple(
            _choice(a, ARTIFACTS, f"{where}.required_artifacts[]") for a in required
        )
    for key in ("unaudited", "infra_failures"):
        if key in raw:
            values[key] = _choice(raw[key], ("block", "warn"), f"{where}.{key}")
    policy = replace(policy, **values)
    for key, what in (
        ("unaudited", "unaudited dependencies"),
        ("infra_failures", "failed infrastructure checks"),
    ):
        if name in NEVER_DOWNGRADES and getattr(policy, key) != "block":
            raise PolicyError(
                f"{where}.{key} is {getattr(policy, key)!r}, but {name} never downgrades "
                f"{what} to a warning: set it to 'block' (or remove it)"
            )
    return policy


def _waiver(raw: Any, index: int, source: str) -> Waiver:
    where = f"{source}: waivers[{index}]"
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where} must be a mapping with {', '.join(WAIVER_FIELDS)}")
    missing = [k for k in WAIVER_FIELDS if raw.get(k) in (None, "")]
    if missing:
        name = f" ({raw['id']})" if raw.get("id") else ""
        raise PolicyError(
            f"{where}{name} is missing {', '.join(missing)}; every waiver needs "
            f"{', '.join(WAIVER_FIELDS)}"
        )
    unknown = set(raw) - set(WAIVER_FIELDS) - set(WAIVER_OPTIONAL)
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    environments = raw.get("environments") or []
    if not isinstance(environments, list) or not all(isinstance(e, str) for e in environments):
        raise PolicyError(f"{where}.environments must be a list of environment names")
    expires = raw["expires"]
    if isinstance(expires, dt.datetime):
        expires = expires.date()
    elif not isinstance(expires, dt.date):
        try:
            expires = dt.date.fromisoformat(str(expires))
        except ValueError:
            raise PolicyError(f"{where}.expires={expires!r} is not a YYYY-MM-DD date") from None
    return Waiver(
        str(raw["id"]), str(raw["owner"]), str(raw["reason"]), expires, tuple(environments)
    )


def parse_policy(document: Any, source: str = "security/policy.yaml") -> Policy:
    if not isinstance(document, Mapping) or not isinstance(document.get("environments"), Mapping):
        raise PolicyError(f"{source}: expected a mapping with an `environments` mapping")
    unknown = set(document) - {"version", "defaults", "environments", "waivers"}
    if unknown:
        raise PolicyError(f"{source}: unknown top-level key(s) {', '.join(sorted(unknown))}")
    defaults = document.get("defaults") or {}
    environments = {}
    for name, raw in document["environments"].items():
        merged = {**defaults, **(raw or {})}
        environments[str(name)] = _env_policy(str(name), merged, f"{source}: environments.{name}")
    waivers = tuple(_waiver(w, i, source) for i, w in enumerate(document.get("waivers") or []))
    seen: set[tuple[str, str]] = set()
    for waiver in waivers:
        for env in waiver.environments:
            if env not in environments:
                raise PolicyError(
                    f"{source}: waiver {waiver.id!r} names environment {env!r}; "
                    f"defined: {', '.join(environments)}"
                )
        for env in waiver.environments or ("",):
            if (waiver.id, env) in seen or (waiver.id, "") in seen:
                raise PolicyError(f"{source}: waiver {waiver.key!r} is listed twice")
            seen.add((waiver.id, env))
    return Policy(environments, waivers, source)


def load_policy(path: Path) -> Policy:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise PolicyError(f"{path}: no security policy; create it (see docs/RUNBOOK.md)") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML: {exc}") from None
    return parse_policy(document, str(path))


def apply_policy(
    findings: Iterable[Finding], policy: Policy, env: str, today: dt.date | None = None
) -> Review:
    """Sort findings into blocking, warnings, waived and below the threshold."""
    today = today or dt.datetime.now(dt.UTC).date()
    env_policy = policy.for_env(env)
    review = Review(env)
    used: set[Waiver] = set()
    for waiver in policy.waivers:
        if waiver.expired(today):
            review.blocking.append(
                Finding(
                    "expired-waiver",
                    "policy",
                    waiver.key,
                    "n/a",
                    f"waiver owned by {waiver.owner} expired on {waiver.expires.isoformat()}",
                    "fix the finding and remove the waiver, or renew it with a new expiry "
                    "and reason",
                    waivable=False,
                )
            )
    for finding in findings:
        if finding.kind == "unaudited":
            target = review.warnings if env_policy.unaudited == "warn" else review.blocking
            target.append(finding)
            continue
        # An infra finding is judged by its own stack's block and waivers, whatever the
        # environment under review.
        scope = finding.stack or env
        scope_policy = policy.for_env(scope) if finding.stack else env_policy
        if finding.waivable and not scope_policy.blocks(finding.severity):
            review.below_threshold.append(finding)
            continue
        ids = (finding.id, *finding.aliases)
        match = next(
            (w for w in policy.waivers if finding.waivable and w.id in ids and w.covers(scope)),
            None,
        )
        if match is not None:
            used.add(match)
            if not match.expired(today):
                review.waived.append((finding, match))
                continue
        if finding.kind == "infra" and scope_policy.infra_failures == "warn":
            review.warnings.append(finding)
            continue
        review.blocking.append(finding)
    review.unused_waivers = [w for w in policy.waivers if w not in used]
    return review
