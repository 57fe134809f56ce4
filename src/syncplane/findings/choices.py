"""The findings vocabulary. Severity and state are the record contract's (integrations/records.py), re-exported
so the models and the API name them from here."""

from django.db import models

from syncplane.integrations.records import FindingState, Severity


class TargetKind(models.TextChoices):
    ASSET = "asset", "Asset"
    IMAGE = "image", "Container image"
    REPOSITORY = "repository", "Repository"


class ScanStatus(models.TextChoices):
    COMPLETE = "complete", "Complete (may fix findings)"
    PARTIAL = "partial", "Partial (fixes nothing)"


# Highest first: summaries and events list severities in this order.
SEVERITY_ORDER = tuple(Severity.values)
# States in which a finding needs attention; accepted and false positive are decided, fixed is gone.
ACTIVE_STATES = (FindingState.OPEN,)

__all__ = ["ACTIVE_STATES", "SEVERITY_ORDER", "FindingState", "ScanStatus", "Severity", "TargetKind"]
