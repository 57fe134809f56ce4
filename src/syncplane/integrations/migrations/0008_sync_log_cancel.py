"""Cancelling a sync (the `cancelled` status and who asked for it) and the review before the schedule.

`scheduled` is off for a new integration until its first successful manual sync; integrations that already
have a successful sync keep being scheduled, so this migration turns it on for them. On SQLite the AlterField
of the status rebuilds the table, which drops the immutability triggers; the post_migrate handler installs
them again (now counting `cancelled` as finished) after every migrate.
"""

from django.db import migrations, models

RUN_STATUSES = [
    ("queued", "Queued"), ("running", "Running"), ("success", "Success"), ("partial", "Partial"),
    ("failed", "Failed"), ("cancelled", "Cancelled"),
]


def schedule_integrations_with_a_successful_sync(apps, schema_editor):
    ExternalSystem = apps.get_model("integrations", "ExternalSystem")
    IntegrationSyncLog = apps.get_model("integrations", "IntegrationSyncLog")
    synced = IntegrationSyncLog.objects.filter(status__in=["success", "partial"], dry_run=False)
    ExternalSystem.objects.filter(pk__in=synced.values("external_system_id")).update(scheduled=True)


class Migration(migrations.Migration):

    dependencies = [
        ("integrations", "0007_sync_log_phase_timings"),
    ]

    operations = [
        migrations.AddField(
            model_name="externalsystem",
            name="scheduled",
            field=models.BooleanField(
                default=False, verbose_name="synced on schedule",
                help_text="Whether the schedule syncs this integration (when enabled and due). Off for a new "
                "integration, so nothing is synced before someone has reviewed it: its first successful manual sync "
                "(API or command line, not a dry run) turns it on. Set it to turn the schedule on (or off) yourself.",
            ),
        ),
        migrations.AddField(
            model_name="integrationsynclog",
            name="cancel_requested_at",
            field=models.DateTimeField(
                blank=True, null=True,
                help_text="When someone asked to cancel this run; the worker stops at its next page.",
            ),
        ),
        migrations.AddField(
            model_name="integrationsynclog",
            name="cancel_requested_by",
            field=models.CharField(blank=True, help_text="Who asked to cancel this run.", max_length=150),
        ),
        migrations.AlterField(
            model_name="integrationsynclog",
            name="status",
            field=models.CharField(choices=RUN_STATUSES, default="queued", max_length=20),
        ),
        migrations.AlterField(
            model_name="externalsystem",
            name="last_sync_status",
            field=models.CharField(blank=True, choices=RUN_STATUSES, editable=False, max_length=20),
        ),
        migrations.RunPython(schedule_integrations_with_a_successful_sync, migrations.RunPython.noop),
    ]
