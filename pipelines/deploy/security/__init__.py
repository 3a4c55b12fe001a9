"""Deploy step 2: the scanners' output reviewed against security/policy.yaml."""
