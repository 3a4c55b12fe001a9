"""Game days: break the environment on purpose under synthetic traffic (scenarios.toml), and
score how it coped: detection, recovery, failed requests, acknowledged orders lost."""
