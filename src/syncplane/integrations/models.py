from django.core.validators import URLValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from syncplane.core.models import CorrelationIdModel, TimeStampedModel
from syncplane.integrations.choices import (
    ACTIVE_RUN_STATUSES,
    FINISHED_RUN_STATUSES,
    AuthType,
    Category,
    ErrorKind,
    RecordAction,
    RecordStatus,
    RunStatus,
    SyncMode,
    SystemType,
    Trigger,
)


class IntegrationHealth(models.TextChoices):
    HEALTHY = "healthy", "Healthy"
    DEGRADED = "degraded", "Degraded"  # a failure or two in a row, a partial run, a dead letter
    FAILING = "failing", "Failing"  # failures in a row, or a sink whose credentials are refused
    DISABLED = "disabled", "Disabled"


class ExternalSystemQuerySet(models.QuerySet):
    def live(self):
        return self.filter(archived_at__isnull=True)


class ExternalSystem(TimeStampedModel):
    """One configured connection to an external system (an "integration")."""

    name = models.CharField(max_length=100, help_text="A name unique among live integrations.")
    system_type = models.CharField(max_length=40, choices=SystemType.choices)
    category = models.CharField(max_length=20, choices=Category.choices, editable=False)
    # http(s) for the APIs, ldap(s) for directories; the connector's own check_base_url decides what it accepts.
    base_url = models.CharField(
        max_length=500,
        validators=[URLValidator(schemes=["https", "http", "ldaps", "ldap"])],
        help_text="Root URL of the external API, or ldaps://host:636 for a directory.",
    )
    auth_type = models.CharField(max_length=40, choices=AuthType.choices, default=AuthType.BASIC)
    credentials = models.JSONField(
        default=dict,
        blank=True,
        help_text="Secret references by field name (env:, file:, vault:, enc:). Never plain values.",
    )
    config = models.JSONField(default=dict, blank=True, help_text="Settings validated by the connector schema.")
    field_mapping = models.JSONField(
        default=dict, blank=True,
        help_text="Overrides of the connector's default mapping: canonical attribute -> {source, transform, map, "
        "default, date_format}. See docs/runbooks/integration-setup.md.",
    )
    enabled = models.BooleanField(default=True, help_text="Disabled integrations are not synced on schedule.")
    scheduled = models.BooleanField(
        default=False, verbose_name="synced on schedule",
        help_text="Whether the schedule syncs this integration (when enabled and due). Off for a new integration, "
        "so nothing is synced before someone has reviewed it: its first successful manual sync (API or command "
        "line, not a dry run) turns it on. Set it to turn the schedule on (or off) yourself.",
    )
    sync_interval_minutes = models.PositiveIntegerField(
        default=60, help_text="How often the schedule syncs this integration."
    )
    last_sync_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_sync_status = models.CharField(max_length=20, choices=RunStatus.choices, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    archived_at = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="Set when the integration is deleted: its sync history and sources are kept as evidence.",
    )
    webhook_secret = models.CharField(
        max_length=10000, blank=True, verbose_name="webhook secret",
        help_text="Secret reference (env:, file:, vault:, enc:) that inbound webhooks of this integration are "
        "verified with (HMAC key or shared secret, per connector). Never returned.",
    )

    # Health (health.py): kept up to date where a run or a delivery to a sink finishes.
    health = models.CharField(
        max_length=20, choices=IntegrationHealth.choices, default=IntegrationHealth.HEALTHY, editable=False,
        help_text="From its recent runs (and, for a monitoring sink, deliveries); see docs/events.md.",
    )
    consecutive_failures = models.PositiveIntegerField(
        default=0, editable=False, help_text="Failed runs (or sink deliveries) in a row since the last success."
    )
    last_success_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When its last run (or sink delivery) succeeded."
    )
    auto_disable_after = models.PositiveIntegerField(
        null=True, blank=True, verbose_name="disable after failures",
        help_text="Disable the integration after this many consecutive failures; empty: never.",
    )
    disabled_reason = models.CharField(
        max_length=200, blank=True, editable=False, help_text="Why Syncplane disabled it (auto-disable)."
    )
    # A monitoring sink's delivery: one worker at a time (this lease), stopped while its credentials are refused.
    outbox_leased_until = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="Set while a worker sends this sink's events; a lease left to expire means that worker died.",
    )
    delivery_paused_at = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="Set when the sink refused its credentials (401/403): its events wait, pending, until an admin "
        "saves the integration again.",
    )

    objects = ExternalSystemQuerySet.as_manager()

    class Meta:
        verbose_name = "integration"
        constraints = [
            models.UniqueConstraint(
                fields=["name"], condition=Q(archived_at__isnull=True), name="unique_live_integration_name"
            )
        ]
        ordering = ["name"]

    def __str__(self):
        return self.name

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._stored_base_url = instance.__dict__.get("base_url")  # None when deferred: not known
        return instance

    def save(self, *args, **kwargs):
        stored, update_fields = getattr(self, "_stored_base_url", None), kwargs.get("update_fields")
        moved = stored not in (None, self.base_url) and (update_fields is None or "base_url" in update_fields)
        super().save(*args, **kwargs)
        if moved:
            # The cursor and checkpoint belong to the old address (Graph delta links are absolute URLs, a
            # moved simulator or a new instance has other data): the next run starts from the beginning.
            SyncState.objects.filter(external_system=self).update(cursor=None, checkpoint=None)
        self._stored_base_url = self.base_url

    def is_due(self, now=None) -> bool:
        now = now or timezone.now()
        if self.last_sync_at is None:
            return True
        return (now - self.last_sync_at).total_seconds() >= self.sync_interval_minutes * 60


class SyncState(models.Model):
    """Where the next run starts: the committed incremental cursor and the checkpoint of an unfinished run."""

    external_system = models.OneToOneField(ExternalSystem, on_delete=models.CASCADE, related_name="sync_state")
    cursor = models.JSONField(
        null=True, blank=True, help_text="Incremental cursor committed by the last successful run."
    )
    checkpoint = models.JSONField(
        null=True, blank=True,
        help_text="Progress of the unfinished run: saved after each committed page, cleared at the end.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"sync state of {self.external_system}"


class SyncLogQuerySet(models.QuerySet):
    def active(self):
        return self.filter(status__in=ACTIVE_RUN_STATUSES)

    def finished(self):
        return self.filter(status__in=FINISHED_RUN_STATUSES)


class ImmutableRecordError(Exception):
    pass


class IntegrationSyncLog(CorrelationIdModel):
    """The evidence of one sync run. Immutable once finished; finished logs of a system form a hash chain."""

    external_system = models.ForeignKey(ExternalSystem, on_delete=models.PROTECT, related_name="sync_logs")
    # Frozen at the time of the run, so the evidence reads the same after the integration is renamed.
    system_name = models.CharField(max_length=100, editable=False)
    system_type = models.CharField(max_length=40, choices=SystemType.choices, editable=False)
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.MANUAL)
    mode = models.CharField(max_length=20, choices=SyncMode.choices, default=SyncMode.FULL)
    dry_run = models.BooleanField(default=False)
    requested_by = models.CharField(max_length=150, blank=True, help_text="User name of whoever asked for it.")
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.QUEUED)
    resumed_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="The interrupted run whose checkpoint this run continued from.",
    )
    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveBigIntegerField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    pages = models.PositiveIntegerField(default=0)
    total_expected = models.PositiveIntegerField(null=True, blank=True, help_text="Total the source announced.")
    records_read = models.PositiveIntegerField(default=0)
    records_created = models.PositiveIntegerField(default=0)
    records_updated = models.PositiveIntegerField(default=0)
    records_unchanged = models.PositiveIntegerField(default=0)
    records_deleted = models.PositiveIntegerField(default=0)
    records_failed = models.PositiveIntegerField(default=0)
    # Where the time of the run went (wall seconds, summed over pages and attempts), as nautobot-app-ssot's Sync
    # records it. Fetching overlaps writing (the next page is read ahead), so fetch is only the time the engine
    # sat waiting for a page, and the four add up to less than duration_ms.
    fetch_seconds = models.FloatField(
        default=0, help_text="Seconds spent waiting for the connector's next page (time not hidden by read-ahead)."
    )
    map_seconds = models.FloatField(default=0, help_text="Seconds spent mapping and validating records.")
    write_seconds = models.FloatField(
        default=0, help_text="Seconds spent planning and writing pages, outcomes and checkpoints."
    )
    reconcile_seconds = models.FloatField(
        default=0, help_text="Seconds spent on the end of the pass: the deletion check and the sink's finish."
    )
    error_kind = models.CharField(max_length=20, choices=ErrorKind.choices, blank=True)
    error_summary = models.TextField(blank=True)
    # Set by whoever cancels a running sync; the engine reads it when it commits a page (or waits) and stops.
    cancel_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="When someone asked to cancel this run; the worker stops at its next page."
    )
    cancel_requested_by = models.CharField(max_length=150, blank=True, help_text="Who asked to cancel this run.")
    previous_hash = models.CharField(max_length=64, blank=True, editable=False)
    hash = models.CharField(max_length=64, blank=True, editable=False)
    hash_key_id = models.CharField(
        max_length=16, blank=True, editable=False,
        help_text="Which evidence key signed this link (HMAC-SHA256); empty: chained before keys, plain SHA-256.",
    )
    legacy_seal = models.CharField(
        max_length=100, blank=True, editable=False,
        help_text="On the last log an integration chained before keys: that head signed with an evidence key, "
        "so unkeyed links verify up to it and no further.",
    )

    objects = SyncLogQuerySet.as_manager()

    class Meta:
        ordering = ["-queued_at", "-id"]
        constraints = [
            # Single flight, enforced by the database so two triggers cannot race past each other.
            models.UniqueConstraint(
                fields=["external_system"],
                condition=Q(status__in=ACTIVE_RUN_STATUSES),
                name="one_active_sync_per_integration",
            )
        ]
        indexes = [models.Index(fields=["external_system", "status"])]

    def __str__(self):
        return f"sync #{self.pk} of {self.system_name} ({self.status})"

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._stored_finished = instance.status in FINISHED_RUN_STATUSES
        return instance

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_RUN_STATUSES

    def save(self, *args, **kwargs):
        if getattr(self, "_stored_finished", False):
            raise ImmutableRecordError(f"sync log {self.pk} is finished and cannot be changed")
        super().save(*args, **kwargs)
        self._stored_finished = self.is_finished

    def delete(self, *args, **kwargs):
        if self.is_finished or getattr(self, "_stored_finished", False):
            raise ImmutableRecordError(f"sync log {self.pk} is finished and cannot be deleted")
        return super().delete(*args, **kwargs)

    def evidence(self) -> dict:
        """The fields the hash covers: everything a reader of the evidence relies on.

        Measurements of how the run went (duration, pages, heartbeat, phase seconds) are left out on purpose:
        they say nothing about what was exchanged, and adding a field here would break the chain of every log
        finished before it existed. The database triggers keep them unchanged once the log is finished all
        the same."""
        return {
            "id": self.pk,
            "external_system_id": self.external_system_id,
            "system_name": self.system_name,
            "system_type": self.system_type,
            "correlation_id": self.correlation_id,
            "trigger": self.trigger,
            "mode": self.mode,
            "dry_run": self.dry_run,
            "requested_by": self.requested_by,
            "status": self.status,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "counts": [
                self.records_read, self.records_created, self.records_updated,
                self.records_unchanged, self.records_deleted, self.records_failed,
            ],
            "error_kind": self.error_kind,
            "error_summary": self.error_summary,
            "previous_hash": self.previous_hash,
        }



class SyncRecordOutcome(models.Model):
    """What happened to one record in one run. Written in bulk; only changes and failures get a row."""

    # No index of its own: the (sync_log, status) index below serves every lookup by log.
    sync_log = models.ForeignKey(
        IntegrationSyncLog, on_delete=models.PROTECT, related_name="outcomes", db_index=False
    )
    external_id = models.CharField(max_length=255, blank=True)
    action = models.CharField(max_length=20, choices=RecordAction.choices)
    status = models.CharField(max_length=20, choices=RecordStatus.choices)
    changes = models.JSONField(
        null=True, blank=True, help_text="Field-level diff: {field: [old, new]} (updates and dry-run plans)."
    )
    reason = models.TextField(blank=True, help_text="Why the record failed.")
    raw_payload = models.JSONField(null=True, blank=True, help_text="The record as received, for failures.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["sync_log", "status"])]

    def __str__(self):
        return f"{self.action} {self.external_id} ({self.status})"


class OutboxKind(models.TextChoices):
    CHANGE_CREATE = "change.create", "Create the change request"
    CHANGE_CANCEL = "change.cancel", "Cancel the change request"
    EVENT = "event", "Send a domain event to a monitoring sink"


class OutboxStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class OutboxMessage(models.Model):
    """An intent to call an external system, written in the same transaction as the domain change.

    A worker delivers it (with its idempotency key, so a retry that races another delivers once); a beat job
    re-sends pending messages whose time has come, which is what recovers the work of a worker that died.
    """

    kind = models.CharField(max_length=40, choices=OutboxKind.choices, verbose_name="kind")
    external_system = models.ForeignKey(
        ExternalSystem, on_delete=models.PROTECT, related_name="outbox_messages", verbose_name="integration"
    )
    subject_type = models.CharField(max_length=40, help_text="What the message is about, e.g. \"change\".")
    subject_id = models.CharField(max_length=64, db_index=True, help_text="Id of that subject in Syncplane.")
    payload = models.JSONField(default=dict, blank=True, help_text="What the delivery needs besides the subject.")
    idempotency_key = models.CharField(
        max_length=200, unique=True,
        help_text="Sent to (or looked up in) the external system so a retried delivery acts once.",
    )
    status = models.CharField(max_length=20, choices=OutboxStatus.choices, default=OutboxStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Deliveries tried so far.")
    next_attempt_at = models.DateTimeField(
        default=timezone.now, help_text="When a pending message is due (again); the beat job sends it then."
    )
    leased_until = models.DateTimeField(
        null=True, blank=True,
        help_text="Set while a worker delivers the message; a lease left to expire means that worker died.",
    )
    last_error = models.TextField(blank=True, help_text="Why the last attempt failed (vendor text, no secrets).")
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "outbox message"
        ordering = ["id"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            # A sink's events, oldest first: its next batch, its backlog, its dead letters.
            models.Index(fields=["external_system", "status", "id"], name="outbox_sink_status_idx"),
        ]

    def __str__(self):
        return f"{self.kind} {self.subject_type}:{self.subject_id} ({self.status})"


__all__ = [
    "ExternalSystem",
    "ImmutableRecordError",
    "IntegrationHealth",
    "IntegrationSyncLog",
    "OutboxKind",
    "OutboxMessage",
    "OutboxStatus",
    "SyncRecordOutcome",
    "SyncState",
]
