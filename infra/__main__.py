"""Pulumi entry point (`main: infra/` in Pulumi.yaml): read the stack config, build, export."""

from __future__ import annotations

import pulumi
from pulumi.runtime.config import CONFIG, get_config_env

from infra.program import build
from infra.spec import from_pulumi_config

# The whole config map, so that a misspelled key is reported instead of silently ignored.
config = {**get_config_env(), **CONFIG.get()}
for key, value in build(from_pulumi_config(config, stack=pulumi.get_stack())).items():
    pulumi.export(key, value)
