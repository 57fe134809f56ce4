"""Sync evidence that cannot be rewritten: a keyed hash chain, and database triggers that refuse changes.

**The chain.** Each finished log of an integration carries the hash of the one before it and its own hash, an
HMAC-SHA256 of its evidence with a key that is not in the database (`SYNCPLANE_EVIDENCE_KEYS`: the first key
signs, every key verifies, so keys rotate; by default a key derived from SECRET_KEY and SECRET_KEY_FALLBACKS).
`hash_key_id` says which key signed a link; empty means a log chained before keys existed, with a plain SHA-256,
which still verifies, but only up to the head its chain had when keys came: migration 0009 signed that head
(`legacy_seal`), so a log rewritten as an unkeyed one by someone without the key is a broken link. Someone who
can write the database but has no key cannot recompute a chain that verifies; `syncplane verify-evidence` checks
every chain and names the first broken link. The head of each chain is logged on every finished run, so a copy
outside the database shows a chain cut short, or rewritten by someone who has the key.

**The triggers.** The model refuses too; these triggers are the part that holds when someone bypasses the ORM.
They look at the status only, so every column (the counters, the phase seconds) can be written while the run is
queued or running, and none once it has finished, whether the hash covers that column or not. A log's id never
changes, and SQLite refuses an insert that would replace a finished log or its outcomes (`INSERT OR REPLACE`
deletes the old row without firing delete triggers). PostgreSQL refuses TRUNCATE while evidence exists
(`core/triggers.py`). They are (re)installed after every migrate, because SQLite rebuilds a table to alter it and
a rebuilt table has no triggers.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from syncplane.core.triggers import TriggerSet
from syncplane.integrations.choices import FINISHED_RUN_STATUSES

logger = logging.getLogger("syncplane.evidence")

FINISHED = "(" + ", ".join(f"'{status}'" for status in FINISHED_RUN_STATUSES) + ")"
LOG = "integrations_integrationsynclog"
OUTCOME = "integrations_syncrecordoutcome"

SQLITE = [
    f"""CREATE TRIGGER sync_log_immutable_update BEFORE UPDATE ON {LOG}
        WHEN OLD.status IN {FINISHED} OR NEW.id IS NOT OLD.id
        BEGIN SELECT RAISE(ABORT, 'a finished sync log is immutable'); END""",
    f"""CREATE TRIGGER sync_log_immutable_delete BEFORE DELETE ON {LOG}
        WHEN OLD.status IN {FINISHED}
        BEGIN SELECT RAISE(ABORT, 'a finished sync log is immutable'); END""",
    # REPLACE deletes the row it conflicts with and fires no delete trigger (recursive_triggers is off by
    # default, and a raw sqlite3 client would not turn it on): refuse the insert itself.
    f"""CREATE TRIGGER sync_log_immutable_replace BEFORE INSERT ON {LOG}
        WHEN (SELECT status FROM {LOG} WHERE id = NEW.id) IN {FINISHED}
        BEGIN SELECT RAISE(ABORT, 'a finished sync log is immutable'); END""",
    f"""CREATE TRIGGER sync_outcome_immutable_update BEFORE UPDATE ON {OUTCOME}
        BEGIN SELECT RAISE(ABORT, 'sync record outcomes are immutable'); END""",
    f"""CREATE TRIGGER sync_outcome_immutable_delete BEFORE DELETE ON {OUTCOME}
        WHEN (SELECT status FROM {LOG} WHERE id = OLD.sync_log_id) IN {FINISHED}
        BEGIN SELECT RAISE(ABORT, 'sync record outcomes are immutable'); END""",
    # Outcomes are written by the hundred thousand and without an id (NEW.id is then -1 or NULL): only an
    # insert that names an id (the only way to conflict, the id being the table's one unique key) pays a lookup.
    f"""CREATE TRIGGER sync_outcome_immutable_replace BEFORE INSERT ON {OUTCOME}
        WHEN NEW.id > 0 AND (SELECT status FROM {LOG} WHERE id =
            (SELECT sync_log_id FROM {OUTCOME} WHERE id = NEW.id)) IN {FINISHED}
        BEGIN SELECT RAISE(ABORT, 'sync record outcomes are immutable'); END""",
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS sync_log_immutable_update",
    "DROP TRIGGER IF EXISTS sync_log_immutable_delete",
    "DROP TRIGGER IF EXISTS sync_log_immutable_replace",
    "DROP TRIGGER IF EXISTS sync_outcome_immutable_update",
    "DROP TRIGGER IF EXISTS sync_outcome_immutable_delete",
    "DROP TRIGGER IF EXISTS sync_outcome_immutable_replace",
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

# What TRUNCATE (PostgreSQL) and `syncplane flush` must not wipe: finished logs and their outcomes.
EVIDENCE = {
    LOG: f"SELECT 1 FROM {LOG} WHERE status IN {FINISHED}",
    OUTCOME: f"SELECT 1 FROM {OUTCOME} o JOIN {LOG} l ON l.id = o.sync_log_id WHERE l.status IN {FINISHED}",
}

TRIGGERS = TriggerSet(SQLITE, SQLITE_REVERSE, POSTGRES, POSTGRES_REVERSE, EVIDENCE)
install_triggers = TRIGGERS.install
remove_triggers = TRIGGERS.remove


# --- the keyed chain ---------------------------------------------------------------------------------------

UNKEYED = ""  # hash_key_id of links chained before keys: plain SHA-256


@dataclass(frozen=True)
class EvidenceKey:
    id: str
    secret: bytes = b""

    def __repr__(self):  # never the secret, in a traceback or a log line
        return f"EvidenceKey({self.id!r})"


def _key(secret: bytes) -> EvidenceKey:
    # The id is a MAC of a constant: it names the key without revealing it, and needs no configuration.
    return EvidenceKey(hmac.new(secret, b"syncplane evidence key id", hashlib.sha256).hexdigest()[:16], secret)


def _derive(secret_key: str) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"syncplane-evidence").derive(
        secret_key.encode()
    )


@functools.lru_cache(maxsize=8)
def _keys(configured: tuple[str, ...], secret_keys: tuple[str, ...]) -> tuple[EvidenceKey, ...]:
    if configured:
        return tuple(_key(key.encode()) for key in configured)
    # Derived like the encryption keys (integrations/secrets.py): a fresh install signs with no extra setup,
    # and Django's SECRET_KEY_FALLBACKS keep verifying what older SECRET_KEYs signed.
    return tuple(_key(_derive(key)) for key in secret_keys if key)


def evidence_keys() -> tuple[EvidenceKey, ...]:
    """The server's evidence keys: the first signs, every one verifies."""
    from django.conf import settings

    configured = getattr(settings, "SYNCPLANE_EVIDENCE_KEYS", None) or ()
    if isinstance(configured, str):
        configured = configured.split(",")
    configured = tuple(k.strip() for k in configured if k and k.strip())
    secret_keys = () if configured else (settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ()))
    keys = _keys(configured, tuple(secret_keys))
    if not keys:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("Neither SYNCPLANE_EVIDENCE_KEYS nor SECRET_KEY is set")
    return keys


def _payload(log) -> bytes:
    return json.dumps(log.evidence(), sort_keys=True, separators=(",", ":"), default=str).encode()


def link_digest(log, key_id: str | None = None) -> str | None:
    """The hash of a log's evidence with the key it names (None when the server does not hold that key)."""
    key_id = log.hash_key_id if key_id is None else key_id
    if key_id == UNKEYED:
        return hashlib.sha256(_payload(log)).hexdigest()
    key = next((k for k in evidence_keys() if k.id == key_id), None)
    return hmac.new(key.secret, _payload(log), hashlib.sha256).hexdigest() if key else None


def seal(log) -> None:
    """Sign a log that is being finished (previous_hash already set) with the first key, and log the new chain
    head once it is committed: that line is the copy outside the database a rewrite cannot reach."""
    from django.db import transaction

    log.hash_key_id = evidence_keys()[0].id
    log.hash = link_digest(log)
    head = {
        "integration_id": log.external_system_id, "integration": log.system_name, "sync_log_id": log.pk,
        "status": log.status, "hash": log.hash, "hash_key_id": log.hash_key_id,
        "previous_hash": log.previous_hash,
    }
    transaction.on_commit(lambda: logger.info("evidence.chain_head", extra=head))


@dataclass(frozen=True)
class ChainReport:
    """One chain checked: what it is, how many links it has, and its first broken link (None: intact)."""

    subject: str
    links: int
    broken: str | None = None
    broken_id: int | None = None


def verify_sync_logs(external_system_id: int) -> ChainReport:
    """Walk an integration's finished logs in chain order and stop at the first link that does not hold."""
    from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog

    name = ExternalSystem.objects.filter(pk=external_system_id).values_list("name", flat=True).first()
    subject = f"integration {external_system_id} ({name})"
    logs = (
        IntegrationSyncLog.objects.finished()
        .filter(external_system_id=external_system_id)
        .order_by("finished_at", "id")
    )

    def broken(log, reason: str) -> ChainReport:
        return ChainReport(subject, links, f"sync log {log.pk}: {reason}", log.pk)

    previous, previous_id, links = "", None, 0
    unsealed = None  # the first unkeyed link that no sealed pre-key head covers (yet)
    unkeyed_over = False  # past the sealed head or a keyed link: no unkeyed link may follow
    for log in logs.iterator(chunk_size=500):
        links += 1
        if log.previous_hash != previous:
            before = f"sync log {previous_id}" if previous_id else "none: it is the first"
            return broken(log, (
                f"its previous_hash {log.previous_hash[:16] or '(empty)'} is not the hash of the log before it "
                f"({before}, {previous[:16] or '(empty)'}): a log was removed, inserted or reordered"
            ))
        if log.hash_key_id == UNKEYED and unkeyed_over:
            return broken(log, "an unkeyed SHA-256 link after the sealed pre-key head or keyed links: "
                               "a log rewritten by someone without the evidence key")
        expected = link_digest(log)
        if expected is None:
            return broken(log, (
                f"signed with evidence key {log.hash_key_id}, which is not among the server's keys "
                "(SYNCPLANE_EVIDENCE_KEYS, or SECRET_KEY and SECRET_KEY_FALLBACKS)"
            ))
        if not hmac.compare_digest(expected, log.hash):
            how = f"key {log.hash_key_id}" if log.hash_key_id else "unkeyed SHA-256"
            return broken(log, (
                f"its stored hash {log.hash[:16]} does not match its content ({how}): "
                "a field was changed after the log finished"
            ))
        if log.hash_key_id == UNKEYED:
            unsealed = unsealed or log
            if log.legacy_seal:
                if not _legacy_seal_holds(log):
                    return broken(log, "its seal of the pre-key chain head does not match: forged or moved")
                unsealed, unkeyed_over = None, True
        else:
            if unsealed is not None:
                break
            unkeyed_over = True
        previous, previous_id = log.hash, log.pk
    if unsealed is not None:
        return broken(unsealed, "an unkeyed SHA-256 link that no sealed pre-key chain head covers: "
                                "written by someone without the evidence key")
    return ChainReport(subject, links)


def _legacy_seal_message(log_id: int, digest: str) -> bytes:
    return f"syncplane unkeyed chain head {log_id} {digest}".encode()


def _legacy_seal_holds(log) -> bool:
    key_id, _, mac = log.legacy_seal.partition(":")
    key = next((k for k in evidence_keys() if k.id == key_id), None)
    expected = key and hmac.new(key.secret, _legacy_seal_message(log.pk, log.hash), hashlib.sha256).hexdigest()
    return bool(expected) and hmac.compare_digest(expected, mac)


def seal_unkeyed_chains(connection) -> int:
    """Sign the head of every chain built before keys (migration 0009), so unkeyed links verify up to it only:
    without it, someone who rewrote a whole chain as unkeyed links would pass. Raw SQL, for a migration."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, external_system_id, hash FROM {LOG} "  # noqa: S608 (constants only)
            f"WHERE status IN {FINISHED} AND hash_key_id = '' ORDER BY external_system_id, finished_at, id"
        )
        heads = {system_id: (log_id, digest) for log_id, system_id, digest in cursor.fetchall()}
    if not heads:
        return 0
    key = evidence_keys()[0]
    remove_triggers(connection)  # a finished log is immutable: lift the guard for this one write, within the migration
    try:
        with connection.cursor() as cursor:
            for log_id, digest in heads.values():
                mac = hmac.new(key.secret, _legacy_seal_message(log_id, digest), hashlib.sha256).hexdigest()
                cursor.execute(f"UPDATE {LOG} SET legacy_seal = %s WHERE id = %s", [f"{key.id}:{mac}", log_id])  # noqa: S608
    finally:
        install_triggers(connection)
    return len(heads)


def verify_chain(external_system_id: int) -> int | None:
    """The id of the first finished log whose hash or link does not hold, or None when the chain is intact."""
    return verify_sync_logs(external_system_id).broken_id


def _sync_log_chains() -> Iterator[ChainReport]:
    from syncplane.integrations.models import ExternalSystem

    for system_id in ExternalSystem.objects.order_by("id").values_list("id", flat=True):
        yield verify_sync_logs(system_id)


# Each app that keeps evidence adds its check (the changes app: the event log of every change).
_CHECKS: dict[str, Callable[[], Iterator[ChainReport]]] = {"sync logs": _sync_log_chains}


def register_check(name: str, check: Callable[[], Iterator[ChainReport]]) -> None:
    _CHECKS[name] = check


def evidence_checks() -> dict[str, Callable[[], Iterator[ChainReport]]]:
    return dict(_CHECKS)


__all__ = [
    "ChainReport", "EvidenceKey", "TRIGGERS", "evidence_checks", "evidence_keys", "install_triggers",
    "link_digest", "register_check", "remove_triggers", "seal", "verify_sync_logs",
]
