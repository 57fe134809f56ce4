"""Change events and approval records cannot be changed or deleted, and a change outside draft cannot be edited,
even by raw SQL.

The models refuse too; these triggers hold when someone bypasses the ORM. Installed after every migrate, like
the sync-log triggers in `integrations/evidence.py` (SQLite drops a table's triggers when it rebuilds it), and
registered with core, which also refuses TRUNCATE (PostgreSQL) and `flush` while the tables hold a row.

Events are numbered 1, 2, 3... within their change: `syncplane verify-evidence` reports a change whose numbers
have a gap, which is what deleting an event below the triggers leaves behind.
"""

from collections.abc import Iterator

from syncplane.changes.models import FROZEN_OUTSIDE_DRAFT
from syncplane.core.triggers import TriggerSet
from syncplane.integrations.evidence import ChainReport

# name -> (table, the columns of its other unique constraint, which INSERT OR REPLACE can also replace by)
TABLES = {
    "change_event": ("changes_changeevent", ("change_id", "sequence")),
    "change_approval": ("changes_approvalrecord", ("change_id", "external_id")),
}


def _replaced_row(table: str, unique: tuple[str, ...]) -> str:
    same_key = " AND ".join(f"{column} = NEW.{column}" for column in unique)
    return f"EXISTS (SELECT 1 FROM {table} WHERE id = NEW.id OR ({same_key}))"  # noqa: S608 (constants)


SQLITE = [
    statement
    for name, (table, unique) in TABLES.items()
    for statement in (
        f"""CREATE TRIGGER {name}_immutable_update BEFORE UPDATE ON {table}
            BEGIN SELECT RAISE(ABORT, 'change evidence is immutable'); END""",
        f"""CREATE TRIGGER {name}_immutable_delete BEFORE DELETE ON {table}
            BEGIN SELECT RAISE(ABORT, 'change evidence is immutable'); END""",
        # INSERT OR REPLACE deletes the row it conflicts with, without firing the delete trigger.
        f"""CREATE TRIGGER {name}_immutable_replace BEFORE INSERT ON {table}
            WHEN {_replaced_row(table, unique)}
            BEGIN SELECT RAISE(ABORT, 'change evidence is immutable'); END""",
    )
]
SQLITE_REVERSE = [
    f"DROP TRIGGER IF EXISTS {name}_immutable_{op}" for name in TABLES for op in ("update", "delete", "replace")
]

POSTGRES = [
    """CREATE FUNCTION syncplane_refuse_change_evidence() RETURNS trigger AS $$
        BEGIN
          RAISE EXCEPTION 'change evidence is immutable';
        END $$ LANGUAGE plpgsql""",
    *(
        f"""CREATE TRIGGER {name}_immutable BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION syncplane_refuse_change_evidence()"""
        for name, (table, _unique) in TABLES.items()
    ),
]
POSTGRES_REVERSE = [
    *(f"DROP TRIGGER IF EXISTS {name}_immutable ON {table}" for name, (table, _unique) in TABLES.items()),
    "DROP FUNCTION IF EXISTS syncplane_refuse_change_evidence()",
]

# A change that left draft says what it said when it was submitted (changes.models.FROZEN_OUTSIDE_DRAFT): the
# state machine writes only the state and what the ITSM tool reports, and no state leads back to draft.
CHANGE = "changes_changerequest"
FROZEN = FROZEN_OUTSIDE_DRAFT  # attribute names, which are the column names
SQLITE += [
    f"""CREATE TRIGGER change_request_frozen BEFORE UPDATE ON {CHANGE}
        WHEN OLD.state != 'draft' AND (NEW.state = 'draft' OR NEW.id IS NOT OLD.id
            OR {" OR ".join(f"NEW.{column} IS NOT OLD.{column}" for column in FROZEN)})
        BEGIN SELECT RAISE(ABORT, 'only a draft change can be edited'); END""",
    f"""CREATE TRIGGER change_request_frozen_replace BEFORE INSERT ON {CHANGE}
        WHEN EXISTS (SELECT 1 FROM {CHANGE} WHERE state != 'draft'
            AND (id = NEW.id OR correlation_id = NEW.correlation_id
                 OR (external_key != '' AND external_system_id = NEW.external_system_id
                     AND external_key = NEW.external_key)))
        BEGIN SELECT RAISE(ABORT, 'only a draft change can be edited'); END""",  # noqa: S608 (constants)
]
SQLITE_REVERSE += [
    "DROP TRIGGER IF EXISTS change_request_frozen",
    "DROP TRIGGER IF EXISTS change_request_frozen_replace",
]
POSTGRES += [
    f"""CREATE FUNCTION syncplane_refuse_change_edit() RETURNS trigger AS $$
        BEGIN
          IF OLD.state <> 'draft' AND (NEW.state = 'draft' OR NEW.id IS DISTINCT FROM OLD.id
              OR {" OR ".join(f"NEW.{column} IS DISTINCT FROM OLD.{column}" for column in FROZEN)}) THEN
            RAISE EXCEPTION 'only a draft change can be edited';
          END IF;
          RETURN NEW;
        END $$ LANGUAGE plpgsql""",
    f"""CREATE TRIGGER change_request_frozen BEFORE UPDATE ON {CHANGE}
        FOR EACH ROW EXECUTE FUNCTION syncplane_refuse_change_edit()""",
]
POSTGRES_REVERSE += [
    f"DROP TRIGGER IF EXISTS change_request_frozen ON {CHANGE}",
    "DROP FUNCTION IF EXISTS syncplane_refuse_change_edit()",
]

# Every row of these tables is evidence: TRUNCATE (PostgreSQL) and `flush` are refused while one exists.
EVIDENCE = {table: f"SELECT 1 FROM {table}" for table, _unique in TABLES.values()}  # noqa: S608

TRIGGERS = TriggerSet(SQLITE, SQLITE_REVERSE, POSTGRES, POSTGRES_REVERSE, EVIDENCE)
install_triggers = TRIGGERS.install
remove_triggers = TRIGGERS.remove


def verify_event_logs() -> Iterator[ChainReport]:
    """One report per change with events: broken where its sequence numbers are not 1..n without a gap."""
    from django.db.models import Count, Max, Min

    from syncplane.changes.models import ChangeEvent

    per_change = (
        ChangeEvent.objects.values("change_id")
        .annotate(events=Count("id"), first=Min("sequence"), last=Max("sequence"))
        .order_by("change_id")
    )
    for row in per_change.iterator():
        subject, broken, broken_id = f"change {row['change_id']}", None, None
        if row["first"] != 1 or row["last"] != row["events"]:
            numbers = ChangeEvent.objects.filter(change_id=row["change_id"]).order_by("sequence")
            expected = 1
            for event_id, sequence in numbers.values_list("id", "sequence"):
                if sequence != expected:
                    broken_id = event_id
                    broken = (
                        f"event {event_id} is number {sequence} where {expected} was expected: "
                        f"event {expected} of this change was removed"
                    )
                    break
                expected += 1
        yield ChainReport(subject, row["events"], broken, broken_id)
