"""Finished sync logs and their record outcomes cannot be changed or deleted, even by raw SQL.

The model refuses too; these database triggers are the part that holds when someone bypasses the ORM. They look
at the status only, so every column (the counters, the phase seconds) can be written while the run is queued or
running, and none once it has finished, whether the hash covers that column or not. They are
(re)installed after every migrate, because SQLite rebuilds a table to alter it and a rebuilt table has no
triggers.
"""

from syncplane.core.triggers import TriggerSet

FINISHED = "('success', 'partial', 'failed')"
LOG = "integrations_integrationsynclog"
OUTCOME = "integrations_syncrecordoutcome"

SQLITE = [
    f"""CREATE TRIGGER sync_log_immutable_update BEFORE UPDATE ON {LOG}
        WHEN OLD.status IN {FINISHED}
        BEGIN SELECT RAISE(ABORT, 'a finished sync log is immutable'); END""",
    f"""CREATE TRIGGER sync_log_immutable_delete BEFORE DELETE ON {LOG}
        WHEN OLD.status IN {FINISHED}
        BEGIN SELECT RAISE(ABORT, 'a finished sync log is immutable'); END""",
    f"""CREATE TRIGGER sync_outcome_immutable_update BEFORE UPDATE ON {OUTCOME}
        BEGIN SELECT RAISE(ABORT, 'sync record outcomes are immutable'); END""",
    f"""CREATE TRIGGER sync_outcome_immutable_delete BEFORE DELETE ON {OUTCOME}
        WHEN (SELECT status FROM {LOG} WHERE id = OLD.sync_log_id) IN {FINISHED}
        BEGIN SELECT RAISE(ABORT, 'sync record outcomes are immutable'); END""",
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS sync_log_immutable_update",
    "DROP TRIGGER IF EXISTS sync_log_immutable_delete",
    "DROP TRIGGER IF EXISTS sync_outcome_immutable_update",
    "DROP TRIGGER IF EXISTS sync_outcome_immutable_delete",
]

POSTGRES = [
    f"""CREATE FUNCTION syncplane_refuse_finished_log() RETURNS trigger AS $$
        BEGIN
          IF OLD.status IN {FINISHED} THEN
            RAISE EXCEPTION 'a finished sync log is immutable';
          END IF;
          IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
          RETURN NEW;
        END $$ LANGUAGE plpgsql""",
    f"""CREATE TRIGGER sync_log_immutable BEFORE UPDATE OR DELETE ON {LOG}
        FOR EACH ROW EXECUTE FUNCTION syncplane_refuse_finished_log()""",
    f"""CREATE FUNCTION syncplane_refuse_outcome_change() RETURNS trigger AS $$
        BEGIN
          IF TG_OP = 'UPDATE' THEN
            RAISE EXCEPTION 'sync record outcomes are immutable';
          END IF;
          IF (SELECT status FROM {LOG} WHERE id = OLD.sync_log_id) IN {FINISHED} THEN
            RAISE EXCEPTION 'sync record outcomes are immutable';
          END IF;
          RETURN OLD;
        END $$ LANGUAGE plpgsql""",
    f"""CREATE TRIGGER sync_outcome_immutable BEFORE UPDATE OR DELETE ON {OUTCOME}
        FOR EACH ROW EXECUTE FUNCTION syncplane_refuse_outcome_change()""",
]
POSTGRES_REVERSE = [
    f"DROP TRIGGER IF EXISTS sync_log_immutable ON {LOG}",
    "DROP FUNCTION IF EXISTS syncplane_refuse_finished_log()",
    f"DROP TRIGGER IF EXISTS sync_outcome_immutable ON {OUTCOME}",
    "DROP FUNCTION IF EXISTS syncplane_refuse_outcome_change()",
]


TRIGGERS = TriggerSet(SQLITE, SQLITE_REVERSE, POSTGRES, POSTGRES_REVERSE)
install_triggers = TRIGGERS.install
remove_triggers = TRIGGERS.remove
