"""Change events and approval records cannot be changed or deleted, even by raw SQL.

The models refuse too; these triggers hold when someone bypasses the ORM. Installed after every migrate, like
the sync-log triggers in `integrations/evidence.py` (SQLite drops a table's triggers when it rebuilds it).
"""

from syncplane.core.triggers import TriggerSet

TABLES = {"change_event": "changes_changeevent", "change_approval": "changes_approvalrecord"}

SQLITE = [
    statement
    for name, table in TABLES.items()
    for statement in (
        f"""CREATE TRIGGER {name}_immutable_update BEFORE UPDATE ON {table}
            BEGIN SELECT RAISE(ABORT, 'change evidence is immutable'); END""",
        f"""CREATE TRIGGER {name}_immutable_delete BEFORE DELETE ON {table}
            BEGIN SELECT RAISE(ABORT, 'change evidence is immutable'); END""",
    )
]
SQLITE_REVERSE = [
    f"DROP TRIGGER IF EXISTS {name}_immutable_{op}" for name in TABLES for op in ("update", "delete")
]

POSTGRES = [
    """CREATE FUNCTION syncplane_refuse_change_evidence() RETURNS trigger AS $$
        BEGIN
          RAISE EXCEPTION 'change evidence is immutable';
        END $$ LANGUAGE plpgsql""",
    *(
        f"""CREATE TRIGGER {name}_immutable BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION syncplane_refuse_change_evidence()"""
        for name, table in TABLES.items()
    ),
]
POSTGRES_REVERSE = [
    *(f"DROP TRIGGER IF EXISTS {name}_immutable ON {table}" for name, table in TABLES.items()),
    "DROP FUNCTION IF EXISTS syncplane_refuse_change_evidence()",
]


TRIGGERS = TriggerSet(SQLITE, SQLITE_REVERSE, POSTGRES, POSTGRES_REVERSE)
install_triggers = TRIGGERS.install
remove_triggers = TRIGGERS.remove
