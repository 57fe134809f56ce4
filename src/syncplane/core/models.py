import uuid

from django.db import models

from syncplane.core.context import get_correlation_id, new_correlation_id


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, verbose_name="created at")
    updated_at = models.DateTimeField(auto_now=True, verbose_name="updated at")

    class Meta:
        abstract = True


def current_or_new_correlation_id() -> str:
    return get_correlation_id() or new_correlation_id()


class CorrelationIdModel(models.Model):
    """A row that records which piece of work wrote it, to follow it through logs and external systems."""

    correlation_id = models.CharField(
        max_length=128,
        default=current_or_new_correlation_id,
        db_index=True,
        editable=False,
        help_text="Correlation id of the request or task that created this row.",
    )

    class Meta:
        abstract = True


class UUIDModel(models.Model):
    # Ids made by the application let the sync engine insert rows in bulk without asking the database
    # which ids it gave them.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)

    class Meta:
        abstract = True
