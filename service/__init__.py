"""The deployed web API: auth, inventory and orders on PostgreSQL, with the runbook's controls."""

__version__ = "0.1.0"
