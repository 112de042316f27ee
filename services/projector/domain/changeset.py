"""What the fold produces, as typed records, and the set that collects them between drains.

The concerns of the fold note here what they changed (users, profiles, apps, aliases,
segment states) and append what they made (changes, facts, merges, segment records,
consumed builds). `ChangeSet.drain` hands it all over as one `Drained`, the unit the
store commits in one transaction, and starts afresh.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from services.eventlog.events import EventTracked
from services.projector.domain.changes import Change, change_id
from services.projector.domain.user import User

if TYPE_CHECKING:
    from services.projector.domain.rfm import RfmValues
    from services.projector.domain.rfm_fold import AppState
    from services.projector.domain.segments.live import AppSegments

UserKey = tuple[str, str]
# The name of the facts of clock ticks (app "" and user ""): the recorded clock at any position.
TICK_FACT = "$tick"


class Fact(NamedTuple):
    """An event as history queries read it (or a clock tick: see TICK_FACT)."""

    app_id: str
    user_id: str
    name: str
    event_time_us: int
    position: int
    properties: dict[str, Any]


class Merge(NamedTuple):
    """An anonymous user folded into the identified user they turned out to be."""

    app_id: str
    anonymous_user_id: str  # "anonymous:<id>", the key they had
    user_id: str


class Alias(NamedTuple):
    """An anonymous id that now stands for an identified user."""

    app_id: str
    anonymous_id: str
    user_id: str


class Elsewhere(NamedTuple):
    """Identity news for another partition of the log: "link" tells the partition of an
    anonymous id whom it turned out to be; "hand_over" takes that anonymous user's whole
    state (User.to_dict) to the partition of the user."""

    kind: str
    app_id: str
    anonymous_id: str
    user_id: str
    position: int  # where in this log the news arose (it names the letter)
    linked_us: int  # when the Identify that linked them took effect
    state: dict[str, Any] | None = None
    event_id: str = ""  # that Identify, the cause of the merge's changes
    event_time_us: int = 0


class ConsumedBuild(NamedTuple):
    """A build merged into the fold: its stored rows can go."""

    app_id: str
    segment_id: str
    version: int


@dataclass(frozen=True, slots=True)
class SegmentDefined:
    """A version was defined (it builds from here on)."""

    app_id: str
    segment_id: str
    version: int
    position: int
    recorded_us: int
    display_name: str
    description: str
    definition: dict[str, Any]
    silent: bool


@dataclass(frozen=True, slots=True)
class SegmentActivated:
    """A version went live (the one before it, if any, retired)."""

    app_id: str
    segment_id: str
    version: int
    position: int
    recorded_us: int


@dataclass(frozen=True, slots=True)
class SegmentArchived:
    """A segment was archived (its live and building versions with it)."""

    app_id: str
    segment_id: str
    position: int
    recorded_us: int


SegmentRecord = SegmentDefined | SegmentActivated | SegmentArchived


@dataclass
class Drained:
    """What changed since the last drain: the unit the store commits at once."""

    changes: list[Change]
    users: list[User]
    # Users whose traits, contact, consent or location changed (a subset of users).
    profile_users: list[User]
    deleted_users: list[UserKey]
    apps: dict[str, AppState]
    aliases: list[Alias]
    now_us: int
    # Apps whose segment definitions or versions changed.
    segment_apps: dict[str, AppSegments] = field(default_factory=dict)
    merges: list[Merge] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    # What happened to segment definitions, in order.
    segment_records: list[SegmentRecord] = field(default_factory=list)
    consumed_builds: list[ConsumedBuild] = field(default_factory=list)
    elsewhere: list[Elsewhere] = field(default_factory=list)
    # Partitioned: purchasers' current RFM values (None: no longer a purchaser).
    rfm_values: dict[UserKey, RfmValues | None] = field(default_factory=dict)
    # Erased users (and their anonymous ids): their facts lose their properties.
    erased_users: list[UserKey] = field(default_factory=list)


class ChangeSet:
    """Collects what the fold changed and made since the last drain.

    The sets of keys (`users`, `profiles`, `apps`, `aliases`, `segments`) are the ones the
    concerns add to; they are emptied in place by `drain`, so holding them is safe.
    """

    def __init__(self, keep_facts: bool = False) -> None:
        self.keep_facts = keep_facts
        self.users: set[UserKey] = set()
        self.profiles: set[UserKey] = set()
        self.deleted: set[UserKey] = set()
        # Users erased (UserErased): their facts lose their properties.
        self.erased: set[UserKey] = set()
        self.apps: set[str] = set()
        self.aliases: set[tuple[str, str]] = set()
        self.segments: set[str] = set()
        self._changes: list[Change] = []
        self._merges: list[Merge] = []
        self._facts: list[Fact] = []
        self._segment_records: list[SegmentRecord] = []
        self._consumed_builds: list[ConsumedBuild] = []
        self._elsewhere: list[Elsewhere] = []
        self._rfm_values: dict[UserKey, RfmValues | None] = {}
        # The user (app, id) of another partition whose event was just applied here.
        self.forward: UserKey | None = None
        # Changes are recorded no earlier than this: the recorded clock while an app folds
        # its history by its own clock (history_mode.py), so they show as historical.
        self.recorded_floor = 0
        # Whether the changes now made are those of an imported history.
        self.importing = False

    def emit(
        self,
        user: User,
        kind: str,
        from_value: str,
        to_value: str,
        cause: str,
        effective_us: int,
        position: int,
        recorded_us: int,
        *,
        event: Any = None,
        deadline_us: int | None = None,
        correction: bool = False,
        corrected_since_us: int | None = None,
        **extra: Any,
    ) -> None:
        """Record a change of `user` (their next sequence number); `event` (a log event or a
        CauseEvent) caused it."""
        user.sequence += 1
        self._changes.append(
            Change(
                change_id=change_id(user.app_id, user.user_id, user.sequence, kind, position),
                kind=kind,
                app_id=user.app_id,
                user_id=user.user_id,
                sequence=user.sequence,
                from_value=from_value,
                to_value=to_value,
                cause=cause,
                effective_us=effective_us,
                position=position,
                recorded_us=max(recorded_us, self.recorded_floor),
                event_ids=(event.event_id,) if event is not None else (),
                event_name=getattr(event, "name", "") if event is not None else "",
                deadline_us=deadline_us,
                correction=correction,
                corrected_since_us=corrected_since_us,
                imported=self.importing,
                **extra,
            )
        )
        self.users.add(user.key)

    def deleted_user(self, key: UserKey) -> None:
        self.users.discard(key)
        self.deleted.add(key)

    def merged(self, merge: Merge) -> None:
        self._merges.append(merge)

    def segment_record(self, record: SegmentRecord) -> None:
        self._segment_records.append(record)

    def consumed_build(self, build: ConsumedBuild) -> None:
        self._consumed_builds.append(build)

    def tell(self, news: Elsewhere) -> None:
        self._elsewhere.append(news)

    def rfm_value(self, app_id: str, user_id: str, values: RfmValues | None) -> None:
        self._rfm_values[(app_id, user_id)] = values

    def event_fact(self, event: EventTracked, user_id: str, position: int) -> None:
        if self.keep_facts:
            props: dict[str, Any] = dict(event.properties)
            if event.time_properties:
                props["$times"] = event.time_properties
            if event.context:
                props["$context"] = event.context
            self._facts.append(
                Fact(event.app_id, user_id, event.name, event.event_time_us, position, props)
            )

    def tick_fact(self, tick_us: int, position: int) -> None:
        if self.keep_facts:
            self._facts.append(Fact("", "", TICK_FACT, tick_us, position, {}))

    def drain(
        self,
        users: dict[UserKey, User],
        apps: dict[str, AppState],
        aliases: dict[tuple[str, str], str],
        segments: dict[str, AppSegments],
        now_us: int,
    ) -> Drained:
        """Everything collected, with the current state of what changed; then forget it."""
        drained = Drained(
            changes=self._changes,
            users=[users[k] for k in sorted(self.users) if k in users],
            profile_users=[users[k] for k in sorted(self.profiles) if k in users],
            deleted_users=sorted(self.deleted),
            apps={a: apps[a] for a in sorted(self.apps)},
            aliases=[Alias(a, anon, aliases[(a, anon)]) for a, anon in sorted(self.aliases)],
            now_us=now_us,
            segment_apps={a: segments[a] for a in sorted(self.segments)},
            merges=self._merges,
            facts=self._facts,
            segment_records=self._segment_records,
            consumed_builds=self._consumed_builds,
            elsewhere=self._elsewhere,
            rfm_values=self._rfm_values,
            erased_users=sorted(self.erased),
        )
        self._rfm_values = {}
        self._changes, self._merges, self._facts = [], [], []
        self._segment_records, self._consumed_builds, self._elsewhere = [], [], []
        for keys in (self.users, self.profiles, self.deleted, self.erased, self.apps, self.aliases):
            keys.clear()
        self.segments.clear()
        return drained
