"""Planner statistics and visibility after a sync's writes (PostgreSQL).

A sync may write most of a table at once (a first load, a forced resync after
an upgrade). Until the server analyzes and vacuums such a table its plans guess
from page counts and its covering indexes cannot answer alone (no page is known
all-visible), and where autovacuum is off or behind that lasts. ``tidy`` does it
at the end of a run, for the tables past autovacuum's own default thresholds only,
so a sync that changed little costs next to nothing. SQLite needs none of it.
"""

from __future__ import annotations

import logging

from testio_sync.store import backend
from testio_sync.store.models import database
from testio_sync.store.queries import store_call

log = logging.getLogger(__name__)

# autovacuum's defaults: a base number of rows plus a share of the table.
_STALE = (
    "n_mod_since_analyze > 50 + 0.1 * n_live_tup"
    " OR n_dead_tup > 50 + 0.2 * n_live_tup"
    " OR n_ins_since_vacuum > 1000 + 0.2 * n_live_tup"
)


@store_call("tidy the store")
def tidy() -> list[str]:
    """Vacuum and analyze the mirror's tables that many writes changed; their names.

    Runs outside any transaction (``VACUUM`` cannot run in one) and skips a table
    another session is vacuuming already.
    """
    if not backend.is_postgres():
        return []
    if database.connection().info.server_version >= 150000:
        # A session reports its counts at most once a second: this one's last writes
        # (a run's writer writes on this connection) would be missed without a flush.
        database.execute_sql("SELECT pg_stat_force_next_flush()")
    rows = database.execute_sql(
        "SELECT relname FROM pg_stat_user_tables"
        f" WHERE schemaname = current_schema() AND ({_STALE}) ORDER BY relname"
    ).fetchall()
    names = [name for (name,) in rows]
    for name in names:
        quoted = '"' + name.replace('"', '""') + '"'
        database.execute_sql(f"VACUUM (ANALYZE, SKIP_LOCKED) {quoted}")
    if names:
        log.info("vacuumed and analyzed %s", ", ".join(names))
    return names
