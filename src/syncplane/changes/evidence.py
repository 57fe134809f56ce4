"""Change events and approval records cannot be changed or deleted, even by raw SQL.

The models refuse too; these triggers hold when someone bypasses the ORM. Installed after every migrate, like
the sync-log triggers in `integrations/evidence.py` (SQLite drops a table's triggers when it rebuilds it).
"""

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


def install_triggers(connection) -> None:
    """Drop and create the triggers of this database's vendor: idempotent, safe after any migration."""
    drop = {"sqlite": SQLITE_REVERSE, "postgresql": POSTGRES_REVERSE}.get(connection.vendor, [])
    create = {"sqlite": SQLITE, "postgresql": POSTGRES}.get(connection.vendor, [])
    with connection.cursor() as cursor:
        for statement in [*drop, *create]:
            cursor.execute(statement)


def remove_triggers(connection) -> None:
    with connection.cursor() as cursor:
        for statement in {"sqlite": SQLITE_REVERSE, "postgresql": POSTGRES_REVERSE}.get(connection.vendor, []):
            cursor.execute(statement)
