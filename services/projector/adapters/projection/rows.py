"""A drained batch as plain rows, one group per read model. Pure: no database here.

`prepare` runs on the folding thread, right after the drain; its result refers to no
live engine state, so the committing thread can write it while the engine folds on.
Values that must become JSON are encoded here (orjson), so a value no encoder takes
fails the batch before its commit (see adapters/poison.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from psycopg.types.json import Jsonb

from services.common.jetstream import ChangeSubjects
from services.projector.adapters.encode import encode
from services.projector.domain import location
from services.projector.domain.changes import Change
from services.projector.domain.changeset import (
    ConsumedBuild,
    Drained,
    SegmentActivated,
    SegmentArchived,
    SegmentDefined,
    SegmentRecord,
    UserKey,
)
from services.projector.domain.user import User


def to_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def jsonb(value: Any) -> Jsonb:
    """A jsonb value encoded by orjson (set per value: no process-wide JSON setting)."""
    return Jsonb(value, orjson.dumps)


class DefinedRow(NamedTuple):
    """A SegmentDefined, and its definition as JSON text."""

    record: SegmentDefined
    definition: str


SegmentRecordRow = DefinedRow | SegmentActivated | SegmentArchived


@dataclass(frozen=True)
class ProfileRows:
    # Per changed user: the hot columns and the packed state (see profiles.py).
    hot: list[tuple[Any, ...]] = field(default_factory=list)
    # Per user an Identify (or a merge) changed: the profile fields, then app and user.
    fields: list[tuple[Any, ...]] = field(default_factory=list)
    deleted: list[UserKey] = field(default_factory=list)


@dataclass(frozen=True)
class ChangeRows:
    changes: list[tuple[Any, ...]] = field(default_factory=list)
    # (subject, message id, message type, payload) of each published change.
    outbox: list[tuple[str, str, str, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class AppRows:
    # (app, RFM state as JSON); (app, anonymous id, user id).
    apps: list[tuple[str, str]] = field(default_factory=list)
    aliases: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class FactRows:
    facts: list[tuple[Any, ...]] = field(default_factory=list)
    # (user id, app, anonymous user id): the anonymous facts now are the user's.
    moved: list[tuple[str, str, str]] = field(default_factory=list)
    # (app, user id) of erased users: their facts lose their properties.
    erased: list[tuple[str, str]] = field(default_factory=list)


class MemberRow(NamedTuple):
    app_id: str
    segment_id: str
    user_id: str
    version: int
    since_us: int
    entered: bool


@dataclass(frozen=True)
class SegmentRows:
    # (app, anonymous user id) of merged users: their memberships go.
    merged: list[tuple[str, str]] = field(default_factory=list)
    # (app, segment states as JSON).
    states: list[tuple[str, str]] = field(default_factory=list)
    records: list[SegmentRecordRow] = field(default_factory=list)
    # Entries and exits in order: the last one per member wins.
    members: list[MemberRow] = field(default_factory=list)
    consumed_builds: list[ConsumedBuild] = field(default_factory=list)


@dataclass(frozen=True)
class PreparedBatch:
    """A drained batch as rows, ready to commit (on another thread)."""

    profiles: ProfileRows
    changes: ChangeRows
    apps: AppRows
    facts: FactRows
    segments: SegmentRows
    now_us: int
    change_count: int
    # Partitioned: (app, user, last purchase, purchases, amount) of purchasers whose values
    # moved; (app, user) of those no longer purchasers.
    rfm_values: list[tuple[str, str, int, float, float]] = field(default_factory=list)
    rfm_gone: list[tuple[str, str]] = field(default_factory=list)


def hot_row(user: User) -> tuple[Any, ...]:
    return (
        user.app_id,
        user.user_id,
        user.state,
        user.since_us,
        user.usual_gap_days,
        user.rfm_group,
        user.first_seen_us,
        user.last_seen_us,
        user.event_count,
        user.active_day_count,
        orjson.dumps(user.pack(), option=orjson.OPT_NON_STR_KEYS),
        *location.of_user(user),
    )


def fields_row(user: User) -> tuple[Any, ...]:
    profile_location = user.location
    return (
        to_json(user.traits),
        to_json(user.time_traits),
        user.contact.get("email", ""),
        user.contact.get("phone", ""),
        user.contact.get("push_token", ""),
        to_json(user.consents),
        user.timezone,
        profile_location.get("country", ""),
        profile_location.get("city", ""),
        profile_location.get("latitude"),
        profile_location.get("longitude"),
        user.app_id,
        user.user_id,
    )


def details(change: Change) -> dict[str, Any]:
    """The kind-specific part of a change row (its `details` jsonb)."""
    if change.scores is not None:
        r, f, m = change.scores
        return {
            "scores": [r, f, m],
            "recency_days": change.recency_days,
            "purchases": change.purchases,
            "amount": change.amount,
        }
    if change.segment_id:
        return {
            "segment_id": change.segment_id,
            "segment_version": change.segment_version,
            "published": change.published,
        }
    return {}


def change_row(c: Change) -> tuple[Any, ...]:
    return (
        c.app_id,
        c.user_id,
        c.sequence,
        c.change_id,
        c.kind,
        c.from_value,
        c.to_value,
        c.cause,
        list(c.event_ids),
        c.event_name,
        c.effective_us,
        c.recorded_us,
        c.position,
        c.correction,
        c.corrected_since_us,
        jsonb(details(c)),
    )


def segment_record_row(record: SegmentRecord) -> SegmentRecordRow:
    if isinstance(record, SegmentDefined):
        return DefinedRow(record, to_json(record.definition))
    return record  # plain values only


def prepare(drained: Drained, subjects: ChangeSubjects) -> PreparedBatch:
    """The rows of a drained batch."""
    outbox = []
    members = []
    for change in drained.changes:
        if change.published:
            subject, msg_type, payload = encode(change, subjects)
            outbox.append((subject, change.change_id, msg_type, payload))
        if change.segment_id:
            members.append(
                MemberRow(
                    change.app_id,
                    change.segment_id,
                    change.user_id,
                    change.segment_version,
                    change.effective_us,
                    change.to_value == "entered",
                )
            )
    return PreparedBatch(
        profiles=ProfileRows(
            hot=[hot_row(u) for u in drained.users],
            fields=[fields_row(u) for u in drained.profile_users],
            deleted=list(drained.deleted_users),
        ),
        changes=ChangeRows([change_row(c) for c in drained.changes], outbox),
        apps=AppRows(
            apps=[(a, to_json(app.to_dict())) for a, app in drained.apps.items()],
            aliases=[(a.app_id, a.anonymous_id, a.user_id) for a in drained.aliases],
        ),
        facts=FactRows(
            facts=[
                (f.app_id, f.user_id, f.name, f.event_time_us, f.position, jsonb(f.properties))
                for f in drained.facts
            ],
            moved=[(m.user_id, m.app_id, m.anonymous_user_id) for m in drained.merges],
            erased=list(drained.erased_users),
        ),
        segments=SegmentRows(
            merged=[(m.app_id, m.anonymous_user_id) for m in drained.merges],
            states=[(a, to_json(seg.to_dict())) for a, seg in drained.segment_apps.items()],
            records=[segment_record_row(r) for r in drained.segment_records],
            members=members,
            consumed_builds=list(drained.consumed_builds),
        ),
        now_us=drained.now_us,
        change_count=len(drained.changes),
        rfm_values=[
            (app, user, v.last_purchase_us, float(v.purchases), v.amount)
            for (app, user), v in drained.rfm_values.items()
            if v is not None
        ],
        rfm_gone=[key for key, v in drained.rfm_values.items() if v is None],
    )
