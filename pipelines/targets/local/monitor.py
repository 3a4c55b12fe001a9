"""The local CloudWatch: scrape the replicas, store SLO and security-event datapoints,
evaluate the alarms.

Runs inside the agent's loop. Datapoints and alarm history live under `alarms/`, so
`env.status`, the deploy's verify step and `incident.timeline` read the same facts.
`state.json` keeps the SLO alarms (`states`, what verify judges a release by) apart from the
security alarms (`security_states`): an attack during a bake is not the release's fault.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from infra.spec import EnvironmentSpec
from pipelines.targets.local.alarms import (
    SECURITY_ALARMS,
    AlarmEvaluator,
    LogNotifier,
    Notifier,
    WebhookNotifier,
    security_rules,
    slo_rules,
)
from pipelines.targets.local.layout import EnvLayout, read_json, write_json
from pipelines.targets.local.metrics_scrape import (
    AVAILABILITY,
    ERROR_RATE,
    P95_LATENCY,
    REQUEST_RATE,
    MetricStore,
    SloScraper,
    Snapshot,
    scrape,
    security_event_metric,
)

log = logging.getLogger("drydock.monitor")


def rules_for(spec: EnvironmentSpec) -> list[Any]:
    return slo_rules(
        p95_threshold_seconds=spec.slo_latency_p95_seconds,
        error_rate_threshold=spec.slo_error_rate_percent / 100,
        availability_target=spec.slo_availability_percent / 100,
        period_seconds=spec.local_alarm_period_seconds,
        evaluation_periods=spec.alarm_evaluation_periods,
        datapoints_to_alarm=spec.alarm_datapoints_to_alarm,
    ) + security_rules(
        refresh_reuse_threshold=spec.refresh_reuse_alarm_threshold,
        lockout_threshold=spec.lockout_alarm_threshold,
        period_seconds=spec.security_alarm_period_seconds,
    )


class Monitor:
    def __init__(
        self, layout: EnvLayout, spec: EnvironmentSpec, metrics_token: Callable[[], str]
    ) -> None:
        self.layout = layout
        self.spec = spec
        self.metrics_token = metrics_token
        self.interval = max(1.0, spec.local_alarm_period_seconds / 5)
        self.store = MetricStore(layout.alarms / "datapoints.jsonl", retention=24 * 3600)
        notifiers: list[Notifier] = [LogNotifier()]
        if spec.alarm_https_endpoint:
            notifiers.append(WebhookNotifier(spec.alarm_https_endpoint))
        self.evaluator = AlarmEvaluator(
            rules_for(spec), self.store, layout.alarms / "history.jsonl", notifiers
        )
        self.scraper = SloScraper()
        self.client = httpx.Client(timeout=1.0)
        self._last = 0.0

    def tick(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if now - self._last < self.interval:
            return
        previous, self._last = self._last, now
        observed = read_json(self.layout.observed) or {}
        desired = read_json(self.layout.desired) or {}
        replicas = [r for r in observed.get("replicas", []) if r["health"] != "draining"]
        token = self.metrics_token()
        snapshots: dict[str, Snapshot] = {}
        for replica in replicas:
            try:
                snapshots[f"{replica['slot']}:{replica['pid']}"] = scrape(
                    f"http://127.0.0.1:{replica['port']}", token, timeout=1.0, client=self.client
                )
            except httpx.HTTPError:
                continue
        healthy = sum(1 for r in replicas if r["health"] == "ready")
        sample = self.scraper.observe(snapshots, healthy, int(desired.get("replicas", 0)))
        for metric, value in (
            (P95_LATENCY, sample.p95_seconds),
            (ERROR_RATE, sample.error_rate),
            (AVAILABILITY, sample.availability),
        ):
            if value is not None:
                self.store.put(metric, value, now)
        if snapshots and previous:  # the rate over the interval since the scrape before
            self.store.put(REQUEST_RATE, sample.requests / (now - previous), now)
        if snapshots:  # a count, zero included, only from replicas that answered
            for event in SECURITY_ALARMS:
                self.store.put(
                    security_event_metric(event), sample.security_events.get(event, 0.0), now
                )
        self.evaluator.evaluate(now)
        states = {name: state.value for name, state in self.evaluator.states.items()}
        security = set(SECURITY_ALARMS.values())
        write_json(
            self.layout.alarms / "state.json",
            {
                "updated_at": now,
                "states": {k: v for k, v in states.items() if k not in security},
                "security_states": {k: v for k, v in states.items() if k in security},
            },
        )
