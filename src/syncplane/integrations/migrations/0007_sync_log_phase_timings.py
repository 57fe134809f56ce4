"""Per-phase seconds on sync logs (fetch, map, write, reconcile).

On SQLite each AddField rebuilds the table, which drops the immutability triggers; the app's post_migrate
handler (integrations.apps) installs them again after every migrate, as for the earlier migrations.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('integrations', '0006_externalsystem_webhook_secret_outboxmessage'),
    ]

    operations = [
        migrations.AddField(
            model_name='integrationsynclog',
            name='fetch_seconds',
            field=models.FloatField(default=0, help_text="Seconds spent waiting for the connector's next page (time not hidden by read-ahead)."),
        ),
        migrations.AddField(
            model_name='integrationsynclog',
            name='map_seconds',
            field=models.FloatField(default=0, help_text='Seconds spent mapping and validating records.'),
        ),
        migrations.AddField(
            model_name='integrationsynclog',
            name='reconcile_seconds',
            field=models.FloatField(default=0, help_text="Seconds spent on the end of the pass: the deletion check and the sink's finish."),
        ),
        migrations.AddField(
            model_name='integrationsynclog',
            name='write_seconds',
            field=models.FloatField(default=0, help_text='Seconds spent planning and writing pages, outcomes and checkpoints.'),
        ),
    ]
