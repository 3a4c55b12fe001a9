"""Deterministic AWS names per stack. Pure Python: the pipelines and tests derive them too.

Resources that operators and the pipelines look up by name (cluster, service, task families,
DB instance, log group, alarms, secrets) get these fixed names; everything else is auto-named
by Pulumi so that replacements can be created before the old resource is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra import environment_class as env_class

PROJECT = "drydock"
# The backups bucket's layout, as pipelines/targets/aws writes it: the drill's dumps
# (dumps/<env>/<id>/), the release history (ledger/<env>/...) and the deploy locks.
DUMPS_PREFIX = "dumps/"
LEDGER_PREFIX = "ledger/"
LOCKS_PREFIX = "locks/"


@dataclass(frozen=True)
class Names:
    stack: str

    @property
    def prefix(self) -> str:
        return f"{PROJECT}-{self.stack}"

    @property
    def cluster(self) -> str:
        return self.prefix

    @property
    def service(self) -> str:
        return f"{self.prefix}-api"

    @property
    def container(self) -> str:
        return "api"

    @property
    def task_family(self) -> str:
        return f"{self.prefix}-api"

    @property
    def migrate_family(self) -> str:
        return f"{self.prefix}-migrate"

    @property
    def db_instance(self) -> str:
        return self.prefix

    @property
    def final_snapshot(self) -> str:
        # Fixed so that a destroy leaves a snapshot whose name the runbook can point to.
        return f"{self.prefix}-final"

    @property
    def db_admin_user(self) -> str:
        return "drydock_admin"

    @property
    def db_app_user(self) -> str:
        return "drydock_app"

    @property
    def log_group(self) -> str:
        return f"/{PROJECT}/{self.stack}/api"

    @property
    def flow_log_group(self) -> str:
        return f"/{PROJECT}/{self.stack}/vpc-flow-logs"

    @property
    def waf_log_group(self) -> str:
        # WAF delivers only to log groups whose name starts with aws-waf-logs-.
        return f"aws-waf-logs-{self.prefix}"

    @property
    def web_acl(self) -> str:
        return self.prefix

    def db_log_group(self, export: str) -> str:
        # The group RDS writes an exported log to; declared by us so that it has a retention.
        return f"/aws/rds/instance/{self.db_instance}/{export}"

    @property
    def repository(self) -> str:
        return self.prefix

    @property
    def dashboard(self) -> str:
        return self.prefix

    @property
    def app_db_secret(self) -> str:
        return f"{PROJECT}/{self.stack}/app-db"

    @property
    def jwt_secret(self) -> str:
        return f"{PROJECT}/{self.stack}/jwt"

    @property
    def metrics_secret(self) -> str:
        return f"{PROJECT}/{self.stack}/metrics"

    @property
    def backup_vault(self) -> str:
        return self.prefix

    @property
    def dr_backup_vault(self) -> str:
        # In the DR region, where the name alone would not tell a copy from an original.
        return f"{self.prefix}-dr"

    @property
    def alarms(self) -> dict[str, str]:
        """Alarm names by what they watch; the first three are the runbook's SLOs (§3)."""
        return {
            "latency_p95": f"{self.prefix}-slo-latency-p95",
            "error_rate": f"{self.prefix}-slo-error-rate",
            "availability": f"{self.prefix}-slo-availability",
            "db_cpu": f"{self.prefix}-db-cpu",
            "db_free_storage": f"{self.prefix}-db-free-storage",
            "db_connections": f"{self.prefix}-db-connections",
        }

    @property
    def security_alarms(self) -> dict[str, str]:
        """Alarm names by the security event whose spikes they watch (runbook §3, §5)."""
        return {
            "refresh_reused": f"{self.prefix}-security-refresh-reuse",
            "account_locked": f"{self.prefix}-security-account-lockout",
        }

    @property
    def security_metrics_namespace(self) -> str:
        """Where the log group's metric filters count security events, one metric each."""
        return f"{PROJECT}/{self.stack}/security-events"

    def tags(self, environment_class: str) -> dict[str, str]:
        """Every taggable resource's tags. The class is how the policy pack, which sees
        resources only, tells what a stack is held to (infra/environment_class.py)."""
        return {
            "project": PROJECT,
            "environment": self.stack,
            env_class.TAG: environment_class,
            "managed-by": "pulumi",
        }
