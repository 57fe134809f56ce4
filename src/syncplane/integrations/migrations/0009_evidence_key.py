"""Keys for the sync-log hash chain (integrations.evidence).

Logs finished before this migration keep an empty key id: they were chained with a plain SHA-256 and still
verify that way, but only up to the head each integration had now, which this migration seals with the evidence
key (`legacy_seal`): an unkeyed link forged later, by someone without the key, is then a broken link.

On SQLite the AddFields rebuild the table, which drops the immutability triggers; core's post_migrate handler
installs every app's triggers again after every migrate (with the new REPLACE and TRUNCATE guards).
"""

from django.db import migrations, models


def seal(apps, schema_editor):
    from syncplane.integrations.evidence import seal_unkeyed_chains

    seal_unkeyed_chains(schema_editor.connection)


class Migration(migrations.Migration):

    dependencies = [
        ('integrations', '0008_sync_log_cancel'),
    ]

    operations = [
        migrations.AddField(
            model_name='integrationsynclog',
            name='hash_key_id',
            field=models.CharField(blank=True, editable=False, max_length=16, help_text='Which evidence key signed this link (HMAC-SHA256); empty: chained before keys, plain SHA-256.'),
        ),
        migrations.AddField(
            model_name='integrationsynclog',
            name='legacy_seal',
            field=models.CharField(blank=True, editable=False, max_length=100, help_text='On the last log an integration chained before keys: that head signed with an evidence key, so unkeyed links verify up to it and no further.'),
        ),
        migrations.RunPython(seal, migrations.RunPython.noop),
    ]
