"""The asset indexes the lists use, and none they do not: each costs every asset write a page at a random place.

- Every list shows live assets (merged_into IS NULL). (merged_into, name, id) could not give PostgreSQL the name
  order (it does not take `IS NULL` on a leading column as fixing it), so it walked the plain (name, id) index
  and filtered. Partial indexes of the live assets, in name and in updated order, serve both databases; the
  plain one goes.
- `hostname`: the API's filter is case-blind (`UPPER(hostname) = UPPER(...)`), which a plain index cannot serve;
  on PostgreSQL the trigram index of 0004 does.
"""

from django.db import migrations, models

LIVE = models.Q(merged_into__isnull=True)


class Migration(migrations.Migration):

    dependencies = [
        ("inventory", "0006_redundant_indexes"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="asset", name="asset_list_order"),
        migrations.RemoveIndex(model_name="asset", name="asset_live_list_order"),
        migrations.RemoveIndex(model_name="asset", name="asset_live_list_updated"),
        migrations.AddIndex(
            model_name="asset",
            index=models.Index(fields=["name", "id"], name="asset_live_list_order", condition=LIVE),
        ),
        migrations.AddIndex(
            model_name="asset",
            index=models.Index(fields=["updated_at", "id"], name="asset_live_list_updated", condition=LIVE),
        ),
        migrations.AlterField(model_name="asset", name="hostname", field=models.CharField(blank=True, max_length=255)),
    ]
