"""Two asset indexes no query uses, each costing every asset write a page at a random place.

`asset_list_order` (name, id): every list filters live assets and walks `asset_live_list_order` (merged_into,
name, id) instead. `hostname`: the API's filter is case-blind (`UPPER(hostname) = UPPER(...)`), which a plain
index cannot serve; on PostgreSQL the trigram index of 0004 does.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("inventory", "0006_redundant_indexes"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="asset", name="asset_list_order"),
        migrations.AlterField(model_name="asset", name="hostname", field=models.CharField(blank=True, max_length=255)),
    ]
