"""Environment classes: what a stack is held to, whatever it is named. Pure Python.

A stack declares its class (`drydock:environmentClass`); the spec, the components and the
policy pack read the class, never the stack's name, so a second production stack
(`production-us`, say) gets production's rules. Every taggable resource carries the class
as a tag, which is how the policy pack, seeing only resources, knows it.
"""

from __future__ import annotations

STAGING = "staging"
PRODUCTION = "production"
CLASSES = (STAGING, PRODUCTION)
TAG = "environment-class"

# Log groups keep their events at least this long. A year in production: an incident or an
# audit looks back over months, and the industry's rule sets (CIS, checkov) ask for 365
# days; a month in staging covers the releases it rehearses.
MIN_LOG_RETENTION_DAYS = {STAGING: 30, PRODUCTION: 365}
