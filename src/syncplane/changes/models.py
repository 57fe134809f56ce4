import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from syncplane.changes.choices import ChangeState, Decision
from syncplane.core.models import TimeStampedModel
from syncplane.integrations.choices import Category


def new_change_correlation_id() -> str:
    return f"syncplane-chg-{uuid.uuid4()}"


# What a change says, frozen once it leaves draft: the state machine then writes only the state and what the
# ITSM tool reports (external number, key, URL, submission error). The database refuses too (changes/evidence.py).
FROZEN_OUTSIDE_DRAFT = (
    "title", "description", "risk_score", "planned_start", "planned_end", "external_system_id", "correlation_id",
)


class ChangeNotEditable(Exception):
    pass


class ChangeRequest(TimeStampedModel):
    """A change put to the Change Advisory Board, mirrored as one change request in an ITSM tool.

    Only a draft can be edited: outside draft, saving a change that alters what it says is refused."""

    title = models.CharField(max_length=200, verbose_name="title")
    description = models.TextField(blank=True, verbose_name="description")
    risk_score = models.PositiveSmallIntegerField(
        default=0, validators=[MinValueValidator(0), MaxValueValidator(100)], verbose_name="risk score",
        help_text="0 (none) to 100 (highest); each ITSM connector turns it into its own risk codes.",
    )
    planned_start = models.DateTimeField(null=True, blank=True, verbose_name="planned start")
    planned_end = models.DateTimeField(
        null=True, blank=True, verbose_name="planned end", help_text="Must be after the planned start."
    )
    affected_assets = models.ManyToManyField(
        "inventory.Asset", blank=True, related_name="change_requests", verbose_name="affected assets"
    )
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="change_requests",
        verbose_name="requester", help_text="Who recorded the change (set from the caller).",
    )
    state = models.CharField(
        max_length=20, choices=ChangeState.choices, default=ChangeState.DRAFT, verbose_name="state",
        help_text="Moved only through the state machine (changes/states.py).",
    )
    external_system = models.ForeignKey(
        "integrations.ExternalSystem", null=True, blank=True, on_delete=models.PROTECT,
        related_name="change_requests", limit_choices_to={"category": Category.ITSM},
        verbose_name="ITSM integration", help_text="The ITSM tool the change is submitted to.",
    )
    external_change_request_id = models.CharField(
        max_length=100, blank=True, db_index=True, verbose_name="external change request number",
        help_text="The number a person sees in the ITSM tool: CHG0030001, ITSM-42, 17.",
    )
    external_key = models.CharField(
        max_length=255, blank=True, verbose_name="external key",
        help_text="The ITSM tool's stable id of the change request (sys_id, issue id, change id).",
    )
    external_url = models.URLField(max_length=1000, blank=True, verbose_name="external URL")
    correlation_id = models.CharField(
        max_length=64, unique=True, default=new_change_correlation_id, editable=False,
        verbose_name="correlation id",
        help_text="Syncplane's idempotency key for this change, stored on the external change request.",
    )
    submission_error = models.TextField(
        blank=True, verbose_name="submission error",
        help_text="Why the ITSM tool refused the change request, in its own words.",
    )
    external_updated_at = models.DateTimeField(
        null=True, blank=True, verbose_name="external updated at",
        help_text="When the ITSM tool last changed its change request, as it reported.",
    )

    class Meta:
        verbose_name = "change request"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(risk_score__gte=0) & Q(risk_score__lte=100), name="change_risk_score_0_100"
            ),
            models.CheckConstraint(
                condition=Q(planned_start__isnull=True) | Q(planned_end__isnull=True)
                | Q(planned_end__gt=models.F("planned_start")),
                name="change_planned_end_after_start",
            ),
            models.UniqueConstraint(
                fields=["external_system", "external_key"], condition=~Q(external_key=""),
                name="unique_change_external_key",
            ),
        ]
        indexes = [models.Index(fields=["external_system", "state"])]

    def __str__(self):
        number = f" ({self.external_change_request_id})" if self.external_change_request_id else ""
        return f"{self.title}{number}"

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._remember_stored()
        return instance

    def refresh_from_db(self, *args, **kwargs):
        super().refresh_from_db(*args, **kwargs)
        self._remember_stored()

    def _remember_stored(self):
        # What the database holds, as loaded (deferred fields left out): no query of its own at save time.
        loaded = self.__dict__
        self._stored = {name: loaded[name] for name in ("state", *FROZEN_OUTSIDE_DRAFT) if name in loaded}

    def save(self, *args, **kwargs):
        self._refuse_edit_outside_draft(kwargs.get("update_fields"))
        super().save(*args, **kwargs)
        self._remember_stored()

    def _refuse_edit_outside_draft(self, update_fields) -> None:
        stored = getattr(self, "_stored", None)
        if self._state.adding or not stored or stored.get("state", ChangeState.DRAFT) == ChangeState.DRAFT:
            return
        written = set(FROZEN_OUTSIDE_DRAFT)
        if update_fields is not None:
            named = set(update_fields)
            written = {name for name in written if name in named or name.removesuffix("_id") in named}
        changed = sorted(name.removesuffix("_id") for name in written
                         if name in stored and getattr(self, name) != stored[name])
        if self.state == ChangeState.DRAFT and (update_fields is None or "state" in update_fields):
            changed.append("state (back to draft)")
        if changed:
            raise ChangeNotEditable(
                f"change {self.pk} is {stored['state']}: only a draft can be edited ({', '.join(changed)})"
            )

    def clean(self):
        super().clean()
        if self.planned_start and self.planned_end and self.planned_end <= self.planned_start:
            raise ValidationError({"planned_end": "must be after the planned start"})
        if self.external_system_id and self.external_system.category != Category.ITSM:
            raise ValidationError({"external_system": "must be an ITSM integration"})


class ImmutableEvidence(Exception):
    pass


class EvidenceModel(models.Model):
    """Written once, never changed or deleted (the database refuses too: changes/evidence.py)."""

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ImmutableEvidence(f"{self._meta.verbose_name} {self.pk} is evidence and cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableEvidence(f"{self._meta.verbose_name} {self.pk} is evidence and cannot be deleted")


class EventSource(models.TextChoices):
    USER = "user", "User"
    POLL = "poll", "Poll"
    WEBHOOK = "webhook", "Webhook"
    OUTBOX = "outbox", "Outbox delivery"


class ChangeEvent(EvidenceModel):
    """One step of a change's life: a state transition or a fact about its submission."""

    change = models.ForeignKey(ChangeRequest, on_delete=models.PROTECT, related_name="events")
    sequence = models.PositiveIntegerField(help_text="Order of the event within its change, from 1.")
    from_state = models.CharField(max_length=20, choices=ChangeState.choices, blank=True)
    to_state = models.CharField(max_length=20, choices=ChangeState.choices, blank=True)
    event_type = models.CharField(
        max_length=40, help_text="change.submitted, change.approved, change.rejected, change.<state>, "
        "change.delivered, change.submission_failed, ..."
    )
    actor = models.CharField(
        max_length=150, blank=True, help_text="User name frozen at the time (or the integration's name)."
    )
    source = models.CharField(max_length=20, choices=EventSource.choices)
    detail = models.TextField(blank=True)
    correlation_id = models.CharField(max_length=128, blank=True, help_text="Of the request or task that wrote it.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "change event"
        ordering = ["change", "sequence"]
        constraints = [models.UniqueConstraint(fields=["change", "sequence"], name="unique_change_event_sequence")]

    def __str__(self):
        return f"{self.event_type} #{self.sequence} of change {self.change_id}"


class ApprovalRecord(EvidenceModel):
    """One approver's decision, as the ITSM tool recorded it; the same decision is kept once."""

    change = models.ForeignKey(ChangeRequest, on_delete=models.PROTECT, related_name="approvals")
    external_id = models.CharField(max_length=255, help_text="The ITSM tool's id of this decision.")
    approver = models.CharField(max_length=255, blank=True)
    decision = models.CharField(max_length=20, choices=Decision.choices)
    comment = models.TextField(blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=20, choices=EventSource.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "approval record"
        ordering = ["change", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["change", "external_id"], name="unique_change_approval")
        ]

    def __str__(self):
        return f"{self.decision} by {self.approver or '?'} on change {self.change_id}"
