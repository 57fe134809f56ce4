"""Writes pages of directory records (users, groups, devices) into Django, set-based.

The sink speaks the directory record contract that every identity connector maps to (checked per record by
validate_directory_record). Per page it reads the existing accounts, groups and memberships of
the page's records in one query per table (per 500 ids), and writes creates and updates with executemany
(core.bulk.Table) or one bulk statement; a record whose merged attributes did not change only has its
last_seen_at moved, in one statement. Devices go to the asset sink of the same integration (sink_for(RecordKind.ASSET)).

How directory objects become Syncplane's:
- A user becomes a django.contrib.auth user named by its lower-cased UPN / sAMAccountName, with an unusable
  password (Syncplane never receives the directory password). A person known to two directories (same user
  name) is one user with two DirectoryAccounts. A user name that belongs to a local user (one no directory
  manages, such as the demo admin) is never taken over: the account is kept unlinked and a warning logged.
- A user is active exactly when it has at least one live account and none of its live accounts is disabled:
  disabling in either directory locks the person out; a removed account no longer has a say. Users are never
  deleted.
- A group becomes a Django group named "<integration id>:<group name>", which cannot collide with the role
  groups (admin, operator, viewer) nor with another integration's groups. Its Django memberships are
  recomputed after the pass (`finish`), because members may arrive before their objects and groups nest.
- In an incremental run an attribute a record does not carry is unchanged (Graph delta omits unchanged
  properties): stored attributes are merged, never blanked by a missing key.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.db import connection
from django.db.models import Case, Exists, OuterRef, Value, When

from syncplane.core.bulk import NUL, Table, chunks, max_lengths, misfits
from syncplane.directory.choices import DirectoryKind, MemberRef
from syncplane.directory.models import DirectoryAccount, DirectoryGroup, DirectoryMembership
from syncplane.integrations.base import MappedRecord
from syncplane.integrations.choices import RecordAction, RecordKind
from syncplane.integrations.errors import RecordError
from syncplane.integrations.sinks import PlannedChange, check_external_id, fingerprint, sink_for

logger = logging.getLogger("syncplane.directory")

USER_KEYS = frozenset({"kind", "username", "email", "first_name", "last_name", "display_name", "is_active",
                       "dn", "removed"})
GROUP_KEYS = frozenset({"kind", "name", "dn", "member_ref", "members", "members_added", "members_removed",
                        "removed"})
DEVICE_KEYS = frozenset({"kind", "removed", "asset"})
_KEYS = {DirectoryKind.USER: USER_KEYS, DirectoryKind.GROUP: GROUP_KEYS, DirectoryKind.DEVICE: DEVICE_KEYS}
# What a group record says about members is applied to DirectoryMembership, not stored as attributes.
_MEMBER_KEYS = ("members", "members_added", "members_removed")
_TRANSIENT_KEYS = ("removed", *_MEMBER_KEYS)

ACCOUNT_COLUMNS = ("id", "external_system_id", "external_id", "user_id", "username", "dn", "is_active",
                   "attributes", "fingerprint", "first_seen_at", "last_seen_at", "removed_at")
ACCOUNT_UPDATE_COLUMNS = ("user_id", "username", "dn", "is_active", "attributes", "fingerprint", "last_seen_at",
                          "removed_at")
GROUP_COLUMNS = ("id", "external_system_id", "external_id", "name", "dn", "member_ref", "group_id", "attributes",
                 "fingerprint", "first_seen_at", "last_seen_at", "removed_at")
GROUP_UPDATE_COLUMNS = ("name", "dn", "member_ref", "group_id", "attributes", "fingerprint", "last_seen_at",
                        "removed_at")
GROUP_NAME_MAX = 150  # django.contrib.auth Group.name
# The columns a user's or group's text lands in (None: stored in attributes, cut to fit the Django user); checked
# per record, so a value the database would refuse fails its record, not its page.
USER_TEXT = {**dict.fromkeys(("email", "first_name", "last_name", "display_name")),
             **max_lengths(DirectoryAccount, ("username", "dn"))}
GROUP_TEXT = max_lengths(DirectoryGroup, ("name", "dn"))
MEMBER_MAX = DirectoryMembership._meta.get_field("member").max_length


def validate_directory_record(record: MappedRecord, validate_device: Callable[[MappedRecord], None]) -> None:
    """A mapped record must follow the directory record contract; a connector bug shows here, per record."""
    attributes = record.attributes
    kind = attributes.get("kind")
    if kind not in _KEYS:
        raise RecordError(f"kind {kind!r} is not one of user, group, device")
    unknown = set(attributes) - _KEYS[kind]
    if unknown:
        raise RecordError(f"unknown {kind} attributes: {', '.join(sorted(unknown))}")
    check_external_id(record.external_id, DirectoryAccount._meta.get_field("external_id").max_length)
    removed = attributes.get("removed", False)
    if not isinstance(removed, bool):
        raise RecordError("removed must be true or false")
    if kind == DirectoryKind.USER:
        username = attributes.get("username")
        if username is not None and (not isinstance(username, str) or not username.strip()
                                     or len(username) > 150 or username != username.lower()):
            raise RecordError("username must be a non-empty lower-case string of at most 150 characters")
        if "is_active" in attributes and not isinstance(attributes["is_active"], bool):
            raise RecordError("is_active must be true or false")
        _fit(attributes, USER_TEXT)
    elif kind == DirectoryKind.GROUP:
        if attributes.get("member_ref", MemberRef.EXTERNAL_ID) not in MemberRef.values:
            raise RecordError(f"member_ref must be one of {', '.join(MemberRef.values)}")
        members = attributes.get("members")
        if members is not None and not _string_list(members):
            raise RecordError("members must be a list of strings or null")
        for name in ("members_added", "members_removed"):
            if not _string_list(attributes.get(name, [])):
                raise RecordError(f"{name} must be a list of strings")
        _fit(attributes, GROUP_TEXT)
        _fit_members(attributes)
    elif not removed:
        asset = attributes.get("asset")
        if not isinstance(asset, dict):
            raise RecordError("a device record needs an asset dict")
        validate_device(MappedRecord(record.external_id, asset, record.raw))


def _string_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _fit(attributes: dict, limits: dict) -> None:
    problems = misfits(attributes, limits)
    if problems:
        raise RecordError("; ".join(problems))


def _fit_members(attributes: dict) -> None:
    """Each member is a membership row: NULs removed, and one longer than the column fails the record."""
    for name in _MEMBER_KEYS:
        members = attributes.get(name)
        if not members:
            continue
        if any(NUL in member for member in members):
            members = attributes[name] = [member.replace(NUL, "") for member in members]
        longest = max(map(len, members))
        if longest > MEMBER_MAX:
            raise RecordError(f"a member of {name} is {longest} characters long, more than the {MEMBER_MAX} "
                              "its column holds")


@dataclass
class MemberChange:
    """What one page says about one group's members, in the directory's naming (ids, or DNs lower-cased)."""

    full: set[str] | None = None  # the complete member list, when the record carries it
    added: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)

    def take(self, attributes: dict, normalise) -> None:
        if attributes.get("members") is not None:
            self.full = {normalise(m) for m in attributes["members"]}
            self.added, self.removed = set(), set()
        for member in map(normalise, attributes.get("members_added", ())):
            self.added.add(member)
            self.removed.discard(member)
        for member in map(normalise, attributes.get("members_removed", ())):
            self.removed.add(member)
            self.added.discard(member)

    def target(self, existing: set[str]) -> set[str]:
        base = set(self.full) if self.full is not None else set(existing)
        return (base | self.added) - self.removed


class ExistingEntry(NamedTuple):
    """What a page needs of an account or group the directory already has here."""

    id: uuid.UUID
    fingerprint: str
    removed_at: datetime | None
    link_id: int | None  # the Django user (of an account) or group (of a group) it is linked to
    attributes: dict


class UserNames(NamedTuple):
    """The parts of a Django user that follow the directory."""

    username: str
    email: str
    first_name: str
    last_name: str


@dataclass
class Upsert:
    """One user or group of a page: its merged attributes, and the row it already has (None: new)."""

    record: MappedRecord
    attributes: dict
    fp: str
    row: ExistingEntry | None
    removed: bool = False


@dataclass
class DirectoryPlan:
    accounts: list[Upsert] = field(default_factory=list)  # new or changed accounts
    unchanged_accounts: list = field(default_factory=list)  # account ids
    groups: list[Upsert] = field(default_factory=list)
    unchanged_groups: list = field(default_factory=list)
    # group id -> (members to insert or touch, membership ids to delete); new groups get their id in plan()
    members: dict = field(default_factory=dict)
    new_group_ids: dict[str, uuid.UUID] = field(default_factory=dict)
    devices: Any = None  # the asset sink's plan of this page's devices
    removed_devices: list[str] = field(default_factory=list)
    changes: list[PlannedChange] = field(default_factory=list)
    counts: dict = field(default_factory=lambda: {"created": 0, "updated": 0, "unchanged": 0, "deleted": 0})

    @property
    def created(self) -> int:
        return self.counts["created"] + self.devices.created

    @property
    def updated(self) -> int:
        return self.counts["updated"] + self.devices.updated

    @property
    def unchanged(self) -> int:
        return self.counts["unchanged"] + self.devices.unchanged

    @property
    def deleted(self) -> int:
        """Objects the directory says are gone (a delta's removals): counted as deletions, like their outcomes."""
        return self.counts["deleted"] + len(self.removed_devices)


def _merge(old: dict, new: dict) -> dict:
    """Absent keys are unchanged; the record's transient keys (removed, member changes) are not stored."""
    merged = dict(old)
    merged.update((k, v) for k, v in new.items() if k not in _TRANSIENT_KEYS)
    return merged


def _diff(before: dict, after: dict) -> dict:
    return {k: [before.get(k), v] for k, v in after.items() if before.get(k) != v}


def _dn_key(dn: str) -> str:
    # DNs compare case-insensitively; whitespace around the separators is not significant in practice.
    return ",".join(part.strip() for part in dn.split(",")).lower()


class DirectorySink:
    def __init__(self, external_system_id: int):
        self.system_id = external_system_id
        self.assets = sink_for(RecordKind.ASSET, external_system_id)
        self.account_rows = Table(DirectoryAccount, ACCOUNT_COLUMNS)
        self.account_updates = Table(DirectoryAccount, ACCOUNT_UPDATE_COLUMNS)
        self.group_rows = Table(DirectoryGroup, GROUP_COLUMNS)
        self.group_updates = Table(DirectoryGroup, GROUP_UPDATE_COLUMNS)
        self.user_updates = Table(get_user_model(), ("username", "email", "first_name", "last_name"))
        self.django_group_names = Table(Group, ("name",))
        self.membership_rows = Table(DirectoryMembership, ("group_id", "member", "last_seen_at"))

    # --- the sink interface the engine calls -----------------------------------------------------------

    def validate(self, record: MappedRecord) -> None:
        validate_directory_record(record, self.assets.validate)

    def plan(self, records: list[MappedRecord]) -> DirectoryPlan:
        plan = DirectoryPlan()
        users: dict[str, tuple[MappedRecord, dict, bool]] = {}
        groups: dict[str, tuple[MappedRecord, dict, bool]] = {}
        member_changes: dict[str, MemberChange] = {}
        devices: dict[str, MappedRecord] = {}
        removed_devices: dict[str, MappedRecord] = {}
        for record in records:  # a record repeated within a page merges (a large Entra group comes in slices)
            attributes, eid = record.attributes, record.external_id
            kind = attributes["kind"]
            removed = attributes.get("removed", False)
            if kind == DirectoryKind.DEVICE:
                (removed_devices if removed else devices)[eid] = record
                (devices if removed else removed_devices).pop(eid, None)
            else:
                target = users if kind == DirectoryKind.USER else groups
                _previous, merged, _ = target.get(eid, (None, {}, False))
                target[eid] = (record, _merge(merged, attributes), removed)
                if kind == DirectoryKind.GROUP and not removed and any(k in attributes for k in _MEMBER_KEYS):
                    dn_ref = attributes.get("member_ref") == MemberRef.DN
                    member_changes.setdefault(eid, MemberChange()).take(attributes, _dn_key if dn_ref else str)
        self._plan_accounts(plan, users)
        self._plan_groups(plan, groups, member_changes)
        plan.devices = self.assets.plan(
            [MappedRecord(r.external_id, r.attributes["asset"], r.raw) for r in devices.values()]
        )
        plan.changes.extend(plan.devices.changes)
        if removed_devices:
            plan.removed_devices = sorted(self.assets.live(list(removed_devices)))
            plan.changes.extend(PlannedChange(eid, RecordAction.DELETE, None) for eid in plan.removed_devices)
        return plan

    def _plan_accounts(self, plan: DirectoryPlan, users: dict) -> None:
        existing = self._existing(DirectoryAccount, "user_id", list(users))
        for eid, (record, new_attributes, removed) in users.items():
            row = existing.get(eid)
            if row is None:
                if removed:
                    continue  # never create what the directory says is gone
                if not new_attributes.get("username"):
                    logger.warning("directory user without a user name skipped",
                                   extra={"external_system_id": self.system_id, "external_id": eid})
                    continue
                plan.accounts.append(Upsert(record, new_attributes, fingerprint(new_attributes), None))
                plan.changes.append(PlannedChange(eid, RecordAction.CREATE, None))
                plan.counts["created"] += 1
                continue
            attributes = _merge(row.attributes, new_attributes)
            fp = fingerprint(attributes)
            was_removed = row.removed_at is not None
            if removed and was_removed or (not removed and fp == row.fingerprint and not was_removed):
                plan.unchanged_accounts.append(row.id)
                plan.counts["unchanged"] += 1
                continue
            plan.accounts.append(Upsert(record, attributes, fp, row, removed))
            if removed:
                action = RecordAction.DELETE
            else:
                action = RecordAction.RESTORE if was_removed else RecordAction.UPDATE
            plan.changes.append(PlannedChange(eid, action, None if removed else _diff(row.attributes, attributes)))
            plan.counts["deleted" if removed else "updated"] += 1

    def _plan_groups(self, plan: DirectoryPlan, groups: dict, member_changes: dict[str, MemberChange]) -> None:
        existing = self._existing(DirectoryGroup, "group_id", list(groups))
        # A record with the complete member list needs all of its group's current members, to drop the others;
        # one with additions and removals (Graph delta) needs only those among the members it names, so a page
        # reads what it carries, not the whole of a large group again on every page of its slices.
        whole, named = [], {}
        for eid, change in member_changes.items():
            if eid in existing:
                if change.full is not None:
                    whole.append(existing[eid].id)
                else:
                    named[existing[eid].id] = change.added | change.removed
        current = self._memberships(whole, named)
        for eid, (record, new_attributes, removed) in groups.items():
            row = existing.get(eid)
            if row is None and removed:
                continue  # an initial Graph delta lists groups deleted earlier: never create those
            attributes = _merge(row.attributes if row else {}, new_attributes)
            fp = fingerprint(attributes)
            group_id = row.id if row else plan.new_group_ids.setdefault(eid, uuid.uuid4())
            member_diff = {}
            if eid in member_changes and not removed:
                have = current.get(group_id, {})
                change = member_changes[eid]
                want = change.target(set(have))
                # Every member the record names is written (inserted, or its last_seen_at moved: a complete
                # full pass drops the memberships it did not see); only real differences count as changes.
                named = (change.full if change.full is not None else set()) | change.added
                plan.members[group_id] = (sorted(named & want), [have[m] for m in sorted(set(have) - want)])
                added, dropped = sorted(want - set(have)), sorted(set(have) - want)
                if added or dropped:
                    member_diff = {"members_added": added, "members_removed": dropped}
            if row is None:
                plan.groups.append(Upsert(record, attributes, fp, None))
                plan.changes.append(PlannedChange(eid, RecordAction.CREATE, member_diff or None))
                plan.counts["created"] += 1
                continue
            was_removed = row.removed_at is not None
            same = fp == row.fingerprint and not member_diff
            if (removed and was_removed) or (not removed and not was_removed and same):
                plan.unchanged_groups.append(row.id)
                plan.counts["unchanged"] += 1
                continue
            plan.groups.append(Upsert(record, attributes, fp, row, removed))
            if removed:
                action, diff = RecordAction.DELETE, None
            else:
                action = RecordAction.RESTORE if was_removed else RecordAction.UPDATE
                diff = {**_diff(row.attributes, attributes), **member_diff}
            plan.changes.append(PlannedChange(eid, action, diff))
            plan.counts["deleted" if removed else "updated"] += 1

    def _existing(self, model, link: str, external_ids: list[str]) -> dict[str, ExistingEntry]:
        """external_id -> the entry already stored, `link` (user_id, group_id) as its link_id: one query per 500
        ids."""
        rows = {}
        for part in chunks(external_ids):
            query = model.objects.filter(external_system_id=self.system_id, external_id__in=part)
            for eid, *rest in query.values_list("external_id", "id", "fingerprint", "removed_at", link,
                                                "attributes"):
                rows[eid] = ExistingEntry._make(rest)
        return rows

    @staticmethod
    def _memberships(group_ids: list, named: dict[uuid.UUID, set[str]]) -> dict:
        """group id -> {member: membership id}: every member of `group_ids` (one query per 500 groups), and of
        the groups in `named` only the members named there (one query per 500 groups and 500 names)."""
        found: dict = defaultdict(dict)
        for part in chunks(group_ids):
            for pk, group_id, member in DirectoryMembership.objects.filter(group_id__in=part).values_list(
                "id", "group_id", "member"
            ):
                found[group_id][member] = pk
        for part in chunks(list(named)):
            for members in chunks(sorted(set().union(*(named[group_id] for group_id in part)))):
                query = DirectoryMembership.objects.filter(group_id__in=part, member__in=members)
                for pk, group_id, member in query.values_list("id", "group_id", "member"):
                    if member in named[group_id]:
                        found[group_id][member] = pk
        return found

    def apply(self, plan: DirectoryPlan, now: datetime) -> None:
        self._apply_accounts(plan, now)
        self._apply_groups(plan, now)
        self._apply_members(plan, now)
        self.assets.apply(plan.devices, now)
        if plan.removed_devices:
            self.assets.mark_deleted(plan.removed_devices, now)

    # --- users -------------------------------------------------------------------------------------

    def _apply_accounts(self, plan: DirectoryPlan, now: datetime) -> None:
        if plan.accounts:
            user_ids = self._link_users(plan.accounts)
            inserts, updates = [], []
            for item in plan.accounts:
                a, eid = item.attributes, item.record.external_id
                user_id = user_ids.get(eid)
                removed_at = now if item.removed else None
                if item.row is None:
                    inserts.append((uuid.uuid4(), self.system_id, eid, user_id, a["username"], a.get("dn", ""),
                                    a.get("is_active", True), a, item.fp, now, now, None))
                else:
                    if item.removed:
                        removed_at = item.row.removed_at or now
                    updates.append((item.row.id, user_id, a.get("username", ""), a.get("dn", ""),
                                    a.get("is_active", True), a, item.fp, now, removed_at))
            self.account_rows.insert(inserts)
            self.account_updates.update_by_pk(updates)
            self._update_users(plan.accounts, user_ids)
            refresh_active(set(user_ids.values()) - {None})
        touch(DirectoryAccount, plan.unchanged_accounts, now)

    def _link_users(self, items: list[Upsert]) -> dict[str, int | None]:
        """external id -> Django user id for the page's changed accounts; creates the users that are new.

        An account already linked keeps its user. Otherwise the user of that name is looked up: one that a
        directory manages (any integration) is shared; a local one is never taken over; none is created."""
        linked = {i.record.external_id: i.row.link_id for i in items if i.row is not None and i.row.link_id is not None}
        wanted = {i.record.external_id: i.attributes["username"] for i in items
                  if i.record.external_id not in linked and i.attributes.get("username")}
        if not wanted:
            return linked
        user_model = get_user_model()
        found = self._users_named(set(wanted.values()))
        missing = sorted(set(wanted.values()) - set(found))
        if missing:
            first = {}
            for item in items:
                name = item.attributes.get("username")
                if name in missing and name not in first:
                    first[name] = item.attributes
            user_model.objects.bulk_create(
                [user_model(username=name, email=_cut(first[name].get("email"), 254),
                            first_name=_cut(first[name].get("first_name"), 150),
                            last_name=_cut(first[name].get("last_name"), 150),
                            password=make_password(None), is_active=True) for name in missing],
                ignore_conflicts=True,  # another integration's concurrent run may create the same person
            )
            # Names nobody had a moment ago: users this sink just made (or a concurrent run of another
            # directory did), so they are directory users.
            found.update((name, (pk, True)) for name, (pk, _) in self._users_named(set(missing)).items())
        for eid, name in wanted.items():
            user_id, managed = found.get(name, (None, False))
            if user_id is not None and not managed:
                logger.warning(
                    "directory account not linked: the user name belongs to a local Syncplane user",
                    extra={"external_system_id": self.system_id, "external_id": eid, "username": name},
                )
                user_id = None
            linked[eid] = user_id
        return linked

    def _users_named(self, names: set[str]) -> dict[str, tuple[int, bool]]:
        """username -> (user id, managed by a directory): one query per 500 names."""
        user_model = get_user_model()
        has_account = Exists(DirectoryAccount.objects.filter(user_id=OuterRef("pk")))
        found = {}
        for part in chunks(sorted(names)):
            query = user_model.objects.filter(username__in=part).annotate(managed=has_account)
            found.update((name, (pk, managed)) for pk, name, managed in query.values_list("pk", "username", "managed"))
        return found

    def _update_users(self, items: list[Upsert], user_ids: dict) -> None:
        """The person's names and email follow the directory (the last directory to change them wins); a
        renamed account renames the user unless another user already has the new name."""
        rows = {}
        for item in items:
            user_id = user_ids.get(item.record.external_id)
            if user_id is None or item.removed:
                continue
            rows[user_id] = item.attributes
        if not rows:
            return
        user_model = get_user_model()
        current: dict[int, UserNames] = {}
        for part in chunks(sorted(rows)):
            current.update((pk, UserNames._make(names)) for pk, *names in user_model.objects.filter(pk__in=part)
                           .values_list("pk", *UserNames._fields))
        renames = {a.get("username") for pk, a in rows.items()
                   if a.get("username") not in (None, current[pk].username)}
        taken = set(self._users_named(renames)) if renames else set()
        updates = []
        for pk, a in rows.items():
            old = current[pk]
            name = a.get("username") or old.username
            if name != old.username and name in taken:
                logger.warning("directory rename not applied: the new user name is taken",
                               extra={"external_system_id": self.system_id, "user_id": pk})
                name = old.username
            new = UserNames(name, _cut(a.get("email", old.email), 254), _cut(a.get("first_name", old.first_name), 150),
                            _cut(a.get("last_name", old.last_name), 150))
            if new != old:
                updates.append((pk, *new))
        self.user_updates.update_by_pk(updates)

    # --- groups ------------------------------------------------------------------------------------

    def _apply_groups(self, plan: DirectoryPlan, now: datetime) -> None:
        if plan.groups:
            names = self._django_group_names(plan.groups)
            new_django = [names[i.record.external_id] for i in plan.groups if i.row is None or i.row.link_id is None]
            Group.objects.bulk_create([Group(name=n) for n in new_django], ignore_conflicts=True)
            group_ids = {}
            for part in chunks(new_django):
                group_ids.update(Group.objects.filter(name__in=part).values_list("name", "id"))
            inserts, updates, renames = [], [], []
            for item in plan.groups:
                a, eid = item.attributes, item.record.external_id
                name = names[eid]
                linked = item.row.link_id if item.row is not None else None
                django_id = linked if linked is not None else group_ids[name]
                values = (a.get("name", ""), a.get("dn", ""), a.get("member_ref", MemberRef.EXTERNAL_ID), django_id,
                          a, item.fp, now)
                if item.row is None:
                    inserts.append((plan.new_group_ids[eid], self.system_id, eid, *values[:3], django_id,
                                    a, item.fp, now, now, None))
                else:
                    removed_at = (item.row.removed_at or now) if item.removed else None
                    updates.append((item.row.id, *values, removed_at))
                    if item.row.link_id is not None and not item.removed:
                        renames.append((item.row.link_id, name))
            self.group_rows.insert(inserts)
            self.group_updates.update_by_pk(updates)
            self._rename_django_groups(renames)
            removed = [i.row.id for i in plan.groups if i.removed and i.row is not None]
            for part in chunks(removed):
                DirectoryMembership.objects.filter(group_id__in=part).delete()
        touch(DirectoryGroup, plan.unchanged_groups, now)

    def _django_group_names(self, items: list[Upsert]) -> dict[str, str]:
        """external id -> the Django group name: '<integration id>:<name>'; if that name is already another
        group's (directories allow two groups with one display name), the external id is added."""
        wanted = {i.record.external_id: django_group_name(self.system_id, i.attributes.get("name", ""),
                                                          i.record.external_id) for i in items}
        owner = {i.record.external_id: i.row.link_id if i.row is not None else None for i in items}
        holders = {}
        for part in chunks(sorted(set(wanted.values()))):
            holders.update(Group.objects.filter(name__in=part).values_list("name", "id"))
        names, used = {}, set()
        for eid, name in wanted.items():
            holder = holders.get(name)
            if name in used or (holder is not None and holder != owner[eid]):
                name = django_group_name(self.system_id, "", eid, suffix=wanted[eid].split(":", 1)[1])
            used.add(name)
            names[eid] = name
        return names

    def _rename_django_groups(self, renames: list[tuple[int, str]]) -> None:
        if not renames:
            return
        current = {}
        for part in chunks([pk for pk, _ in renames]):
            current.update(Group.objects.filter(pk__in=part).values_list("pk", "name"))
        self.django_group_names.update_by_pk((pk, name) for pk, name in renames if current.get(pk) != name)

    def _apply_members(self, plan: DirectoryPlan, now: datetime) -> None:
        rows, gone = [], []
        for group_id, (members, drop) in plan.members.items():
            rows.extend(self.membership_rows.adapt((group_id, m, now)) for m in members)
            gone.extend(drop)
        if rows:
            # One executemany upsert (SQLite and PostgreSQL both speak ON CONFLICT): new members are inserted,
            # known ones only get their last_seen_at moved.
            table = self.membership_rows
            group, member, seen = table.columns
            sql = (f"INSERT INTO {table.table} ({group}, {member}, {seen}) VALUES (%s, %s, %s) "  # noqa: S608
                   f"ON CONFLICT ({group}, {member}) DO UPDATE SET {seen} = excluded.{seen}")
            with connection.cursor() as cursor:
                cursor.executemany(sql, rows)
        for part in chunks(gone):
            DirectoryMembership.objects.filter(pk__in=part).delete()

    # --- deletion reconciliation (a clean full pass) -------------------------------------------------

    def unseen(self, seen_before: datetime) -> list[str]:
        ids = []
        for model in (DirectoryAccount, DirectoryGroup):
            ids.extend(model.objects.filter(external_system_id=self.system_id, removed_at__isnull=True,
                                            last_seen_at__lt=seen_before).values_list("external_id", flat=True))
        return ids + self.assets.unseen(seen_before)

    def live(self, external_ids: list[str]) -> list[str]:
        ids = []
        for part in chunks(external_ids):
            for model in (DirectoryAccount, DirectoryGroup):
                ids.extend(model.objects.filter(external_system_id=self.system_id, external_id__in=part,
                                                removed_at__isnull=True).values_list("external_id", flat=True))
        return ids + self.assets.live(external_ids)

    def mark_seen(self, external_ids: list[str], now: datetime) -> None:
        for part in chunks(external_ids):
            for model in (DirectoryAccount, DirectoryGroup):
                model.objects.filter(external_system_id=self.system_id, external_id__in=part).update(
                    last_seen_at=now
                )
        self.assets.mark_seen(external_ids, now)

    def mark_deleted(self, external_ids: list[str], now: datetime) -> None:
        """Gone from the directory: accounts are removed (their users deactivated, never deleted), groups
        lose their members, devices get the inventory's deletion mark."""
        users = set()
        for part in chunks(external_ids):
            accounts = DirectoryAccount.objects.filter(external_system_id=self.system_id, external_id__in=part,
                                                       removed_at__isnull=True)
            users.update(accounts.exclude(user_id=None).values_list("user_id", flat=True))
            accounts.update(removed_at=now)
            groups = DirectoryGroup.objects.filter(external_system_id=self.system_id, external_id__in=part,
                                                   removed_at__isnull=True)
            DirectoryMembership.objects.filter(group__in=groups).delete()
            groups.update(removed_at=now)
        refresh_active(users)
        self.assets.mark_deleted(external_ids, now)

    def count_unseen(self, seen_external_ids: set[str]) -> list[str]:
        """Live accounts, groups and devices not among these ids (a dry run's full pass, a `list_ids`)."""
        ids = []
        for model in (DirectoryAccount, DirectoryGroup):
            live = model.objects.filter(external_system_id=self.system_id, removed_at__isnull=True)
            ids.extend(e for e in live.values_list("external_id", flat=True).iterator() if e not in seen_external_ids)
        return ids + self.assets.count_unseen(seen_external_ids)

    # --- after the pass ------------------------------------------------------------------------------

    def finish(self, *, complete_full_pass: bool, dry_run: bool, now: datetime,
               pass_started_at: datetime | None = None) -> None:
        """Resolve memberships into Django groups, then apply every identity integration's role mapping.

        Runs inside the engine's final transaction, after deletion reconciliation. A complete full pass has
        seen every membership that still exists, so the ones it did not see are dropped first (an Entra full
        run only lists members, it never says one left)."""
        if dry_run:
            return
        from syncplane.directory.access import apply_role_mapping, sync_group_memberships

        if complete_full_pass and pass_started_at is not None:
            DirectoryMembership.objects.filter(
                group__external_system_id=self.system_id, last_seen_at__lt=pass_started_at
            ).delete()
        sync_group_memberships(self.system_id)
        apply_role_mapping()


def django_group_name(system_id: int, name: str, external_id: str, suffix: str = "") -> str:
    """'<integration id>:<group name>' (cut to fit), or with ' (<external id>)' to tell same-named apart."""
    prefix = f"{system_id}:"
    if not suffix:
        return (prefix + (name or external_id))[:GROUP_NAME_MAX]
    tail = f" ({external_id})"
    return prefix + suffix[: GROUP_NAME_MAX - len(prefix) - len(tail)] + tail


def touch(model, ids: list, now: datetime) -> None:
    for part in chunks(ids):
        model.objects.filter(pk__in=part).update(last_seen_at=now)


def refresh_active(user_ids) -> None:
    """A directory user is active when it has a live account and no live account of it is disabled."""
    live = DirectoryAccount.objects.filter(user_id=OuterRef("pk"), removed_at__isnull=True)
    active = Case(When(Exists(live) & ~Exists(live.filter(is_active=False)), then=Value(True)),
                  default=Value(False))
    for part in chunks(sorted(user_ids)):
        get_user_model().objects.filter(pk__in=part).update(is_active=active)


def _cut(value, length: int) -> str:
    return (value or "")[:length]


__all__ = ["DirectoryPlan", "DirectorySink", "validate_directory_record"]
