"""The embedded local target: staging and production on one machine, with real parts.

Reached through `pipelines.targets.get_target("local")`; `target.py` is its entry.
"""
