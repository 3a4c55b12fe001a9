"""The aws target: the Target protocol on the resources the Pulumi program created.

Reached through `pipelines.targets.get_target("aws")`; `target.py` is its entry. This package
imports nothing itself: the one-off task programs in it (`migrate_task`, `backup_task`) run
inside the release image, which has no boto3.
"""
