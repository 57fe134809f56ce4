"""Sightings: when a sync last read a source unchanged, in a narrow table of its own (docs/performance.md).

On PostgreSQL the table leaves half of each page free (fillfactor 50): a re-sync then writes each sighting's new
version beside the old one on the same page, without a new entry in its index (a HOT update), and the next pass
reuses the space the old versions leave.
"""

import django.db.models.deletion
from django.db import migrations, models


def leave_room_for_updates(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE inventory_sourcesighting SET (fillfactor = 50)")


class Migration(migrations.Migration):

    dependencies = [
        ("inventory", "0007_unused_asset_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="SourceSighting",
            fields=[
                ("source", models.OneToOneField(
                    on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name="sighting",
                    serialize=False, to="inventory.assetsource")),
                ("seen_at", models.DateTimeField()),
            ],
        ),
        migrations.RunPython(leave_room_for_updates, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="assetsource",
            name="last_seen_at",
            field=models.DateTimeField(
                help_text="When a sync last wrote this record; a later read of it unchanged is its sighting's."),
        ),
    ]
