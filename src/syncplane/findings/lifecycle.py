"""A person's decisions about a finding: accept the risk, mark a false positive, reopen; and their expiry.

Accepting a risk or marking a false positive needs a reason and an expiry (operator or admin: the API checks the
role); both are recorded in the finding's history. When the expiry passes, the decision lapses: the finding is
open again if a tool still reports it, fixed otherwise. Expiry is applied on read (every findings API read calls
`expire_decisions` first: one indexed query when nothing has expired) and at the end of every scan or sync, so
no list ever shows a lapsed acceptance, without a scheduler.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from syncplane.core.context import get_correlation_id
from syncplane.findings.choices import FindingState
from syncplane.findings.models import Finding, FindingEvent, FindingSource

DECIDED = (FindingState.ACCEPTED, FindingState.FALSE_POSITIVE)


class DecisionError(Exception):
    """A decision that cannot be taken: its message says why (the API answers 400 with it)."""


def decide(finding: Finding, to_state: str, *, actor: str, reason: str, expires_at: datetime | None) -> Finding:
    """Accept the risk of a finding, or mark it a false positive, until `expires_at`."""
    if to_state not in DECIDED:
        raise DecisionError(f"a decision is one of {', '.join(DECIDED)}")
    if not reason.strip():
        raise DecisionError("a reason is required")
    now = timezone.now()
    if expires_at is None or expires_at <= now:
        raise DecisionError("an expiry in the future is required")
    if finding.state == FindingState.FIXED and to_state == FindingState.ACCEPTED:
        raise DecisionError("the finding is fixed: there is no risk left to accept")
    return _change(finding, to_state, actor=actor, reason=reason.strip(), expires_at=expires_at, now=now)


def reopen(finding: Finding, *, actor: str, reason: str) -> Finding:
    """Take back an acceptance or a false-positive mark."""
    if finding.state not in DECIDED:
        raise DecisionError(f"only an accepted or false-positive finding can be reopened; this one is {finding.state}")
    now = timezone.now()
    state = FindingState.OPEN if _reported(finding.pk) else FindingState.FIXED
    return _change(finding, state, actor=actor, reason=reason.strip(), expires_at=None, now=now)


def _reported(finding_id) -> bool:
    return FindingSource.objects.filter(finding_id=finding_id, present=True).exists()


def _change(finding: Finding, to_state: str, *, actor: str, reason: str, expires_at, now: datetime) -> Finding:
    with transaction.atomic():
        locked = Finding.objects.select_for_update().get(pk=finding.pk)
        FindingEvent.objects.create(
            finding=locked, from_state=locked.state, to_state=to_state, actor=actor[:150], reason=reason,
            expires_at=expires_at, correlation_id=get_correlation_id() or "", created_at=now,
        )
        locked.state = to_state
        locked.state_reason = reason if to_state in DECIDED else ""
        locked.state_expires_at = expires_at
        locked.state_changed_at = now
        locked.state_changed_by = actor[:150]
        locked.fixed_at = now if to_state == FindingState.FIXED and locked.fixed_at is None else locked.fixed_at
        if to_state == FindingState.OPEN:
            locked.fixed_at = None
        locked.updated_at = now
        locked.save()
    return locked


def expire_decisions(now: datetime | None = None) -> int:
    """Acceptances and false-positive marks whose expiry has passed lapse: open when a tool still reports the
    finding, fixed otherwise; each with a history row. Returns how many lapsed."""
    now = now or timezone.now()
    lapsed = Finding.objects.filter(state__in=DECIDED, state_expires_at__lte=now)
    rows = list(lapsed.annotate(reported=Exists(FindingSource.objects.filter(finding=OuterRef("pk"), present=True)))
                .values_list("pk", "state", "reported"))
    if not rows:
        return 0
    correlation_id = get_correlation_id() or ""
    with transaction.atomic():
        for to_state in (FindingState.OPEN, FindingState.FIXED):
            ids = [pk for pk, _state, reported in rows if reported == (to_state == FindingState.OPEN)]
            if not ids:
                continue
            Finding.objects.filter(pk__in=ids, state__in=DECIDED).update(
                state=to_state, state_reason="", state_expires_at=None, state_changed_at=now,
                state_changed_by="expiry", updated_at=now,
                fixed_at=now if to_state == FindingState.FIXED else None,
            )
        FindingEvent.objects.bulk_create(
            FindingEvent(finding_id=pk, from_state=state,
                         to_state=FindingState.OPEN if reported else FindingState.FIXED, actor="expiry",
                         reason=f"the {'acceptance' if state == FindingState.ACCEPTED else 'false-positive mark'} "
                                "expired", correlation_id=correlation_id, created_at=now)
            for pk, state, reported in rows
        )
    return len(rows)
