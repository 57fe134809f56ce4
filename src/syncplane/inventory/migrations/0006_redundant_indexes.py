"""Indexes every write of an asset or a source kept up and no query used (docs/performance.md).

- `merged_into` and `AssetSource.external_system` lose their single-column foreign-key indexes: the live-list
  indexes (merged_into, ...) and `unique_source_record` (external_system, external_id) begin with the same column
  and serve every lookup by it, including the PROTECT checks on delete.
- On PostgreSQL, Django gives each indexed CharField a `varchar_pattern_ops` twin (`..._like`) for `LIKE 'x%'`.
  Nothing looks up the identification keys, serial numbers or host names by prefix (the search's substring
  matches use the trigram indexes of 0004), so the six twins go: a source row then updates 8 indexes, not 12.
  Django drops such twins with IF EXISTS when it alters a field, so later migrations are unaffected.
"""

import django.db.models.deletion
from django.db import migrations, models

LIKE_TWINS = {
    "inventory_asset": ("serial_number", "hostname"),
    "inventory_assetsource": ("serial_key", "mac_key", "host_key", "device_key"),
}


def drop_like_twins(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return  # SQLite has no such indexes
    with connection.cursor() as cursor:
        for table, columns in LIKE_TWINS.items():
            # By what they are, not by Django's hashed names: one column, varchar_pattern_ops.
            cursor.execute(
                "SELECT i.relname, a.attname FROM pg_index x "
                "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
                "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = x.indkey[0] "
                "JOIN pg_opclass o ON o.oid = x.indclass[0] "
                "WHERE t.relname = %s AND x.indnatts = 1 AND o.opcname = 'varchar_pattern_ops'",
                [table],
            )
            for index, column in cursor.fetchall():
                if column in columns:
                    schema_editor.execute(f'DROP INDEX IF EXISTS "{index}"')


def create_like_twins(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, columns in LIKE_TWINS.items():
        for column in columns:
            name = schema_editor._create_index_name(table, [column], suffix="_like")
            schema_editor.execute(f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ("{column}" varchar_pattern_ops)')


class Migration(migrations.Migration):

    dependencies = [
        ("integrations", "0011_events_health_outbox"),
        ("inventory", "0005_asset_live_list_indexes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="asset",
            name="merged_into",
            field=models.ForeignKey(
                blank=True, db_index=False,
                help_text="Set when reconciliation found this asset to be the same device as another: kept, "
                          "never lost.",
                null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="inventory.asset",
            ),
        ),
        migrations.AlterField(
            model_name="assetsource",
            name="external_system",
            field=models.ForeignKey(
                db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name="asset_sources",
                to="integrations.externalsystem",
            ),
        ),
        migrations.RunPython(drop_like_twins, create_like_twins, elidable=False),
    ]
