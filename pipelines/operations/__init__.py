"""The on-call operations, one implementation for every target: each asks the environment
for its `operations` (and `backups`) capability and never names a target.

    rollback.py   invoke rollback             flags.py      invoke flags.list, flags.set
    db.py         invoke db.status/migrate/reset
    timeline.py   invoke incident.timeline    environments.py  invoke env.*
    rotation.py   invoke secrets.rotate
"""

from pipelines.operations.db import db_migrate, db_reset, db_status
from pipelines.operations.flags import flags_table, list_flags, set_flags
from pipelines.operations.rollback import rollback
from pipelines.operations.timeline import timeline

__all__ = [
    "db_migrate",
    "db_reset",
    "db_status",
    "flags_table",
    "list_flags",
    "rollback",
    "set_flags",
    "timeline",
]
