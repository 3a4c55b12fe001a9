"""The runbook's seven-step deploy: the steps, their runner, the report (see runner.py)."""
