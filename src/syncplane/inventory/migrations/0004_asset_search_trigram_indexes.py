"""Trigram indexes for the asset list's `search` on PostgreSQL (docs/performance.md, "API under load").

`?search=` matches any of eight columns with icontains, which Django writes as `UPPER("col"::text) LIKE UPPER(%s)`.
Without an index PostgreSQL reads every asset for it (about a second at 1,000,000); with one GIN trigram index on
each of those expressions it combines the eight (a bitmap OR). The indexes are built CONCURRENTLY (the migration is
not atomic), so an upgrade does not stop syncs from writing assets meanwhile. SQLite has nothing of the kind: there
the migration does nothing.
"""

from django.db import migrations

SEARCHED = ("name", "serial_number", "hostname", "fqdn", "asset_tag", "ip_address", "owner_email", "assigned_to")


def create_indexes(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        if cursor.fetchone() is None:
            try:
                cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            except Exception as exc:  # the driver's error, whatever its class: say what to do instead
                raise RuntimeError(
                    "the asset search indexes need PostgreSQL's pg_trgm extension, which this database role may not "
                    "create: run `CREATE EXTENSION pg_trgm;` in this database as its owner or a superuser, then "
                    f"migrate again ({exc})"
                ) from exc
        for column in SEARCHED:
            cursor.execute(
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS asset_search_{column}_trgm "
                f"ON inventory_asset USING gin ((UPPER({column}::text)) gin_trgm_ops)"
            )


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for column in SEARCHED:
            cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS asset_search_{column}_trgm")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("inventory", "0003_mdm_and_security_fields"),
    ]

    operations = [migrations.RunPython(create_indexes, drop_indexes, elidable=False)]
