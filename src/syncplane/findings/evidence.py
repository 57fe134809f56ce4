"""A finding's history cannot be changed or deleted, even by raw SQL.

The model refuses too (FindingEvent.save / delete); these triggers hold when someone bypasses the ORM, the same
way as the sync-log and change-event triggers (integrations/evidence.py, changes/evidence.py). They are
(re)installed after every migrate by core (SQLite drops a table's triggers when it rebuilds the table), and core
refuses TRUNCATE (PostgreSQL) and `flush` while the table holds a row.
"""

from syncplane.core.triggers import TriggerSet

TABLE = "findings_findingevent"
MESSAGE = "finding history is immutable"

SQLITE = [
    f"""CREATE TRIGGER finding_event_immutable_update BEFORE UPDATE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END""",
    f"""CREATE TRIGGER finding_event_immutable_delete BEFORE DELETE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END""",
    # INSERT OR REPLACE deletes the row it conflicts with, without firing the delete trigger.
    f"""CREATE TRIGGER finding_event_immutable_replace BEFORE INSERT ON {TABLE}
        WHEN EXISTS (SELECT 1 FROM {TABLE} WHERE id = NEW.id)
        BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END""",  # noqa: S608 (constants)
]
SQLITE_REVERSE = [f"DROP TRIGGER IF EXISTS finding_event_immutable_{op}" for op in ("update", "delete", "replace")]

POSTGRES = [
    f"""CREATE FUNCTION syncplane_refuse_finding_history() RETURNS trigger AS $$
        BEGIN
          RAISE EXCEPTION '{MESSAGE}';
        END $$ LANGUAGE plpgsql""",
    f"""CREATE TRIGGER finding_event_immutable BEFORE UPDATE OR DELETE ON {TABLE}
        FOR EACH ROW EXECUTE FUNCTION syncplane_refuse_finding_history()""",
]
POSTGRES_REVERSE = [
    f"DROP TRIGGER IF EXISTS finding_event_immutable ON {TABLE}",
    "DROP FUNCTION IF EXISTS syncplane_refuse_finding_history()",
]

EVIDENCE = {TABLE: f"SELECT 1 FROM {TABLE}"}  # noqa: S608 (a constant)

TRIGGERS = TriggerSet(SQLITE, SQLITE_REVERSE, POSTGRES, POSTGRES_REVERSE, EVIDENCE)
