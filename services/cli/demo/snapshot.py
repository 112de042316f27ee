"""What the demo dashboard shows, read from the public APIs once a second.

`Poller.poll()` asks the projector (lifecycle counts and position, segments) and the
campaign service (stats per campaign, the newest in-app messages of users who just
entered a segment); `MembershipWatch` follows WatchMembershipChanges in the background
to count entries and exits and to know whose inbox to look at.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import grpc
from cohortflow.campaigns.v1 import campaigns_pb2 as cpb
from cohortflow.campaigns.v1 import inbox_pb2
from cohortflow.campaigns.v1.campaigns_pb2_grpc import CampaignServiceStub
from cohortflow.campaigns.v1.inbox_pb2_grpc import InboxServiceStub
from cohortflow.changes.v1 import changes_pb2
from cohortflow.profiles.v1 import profiles_pb2
from cohortflow.profiles.v1.profiles_pb2_grpc import ProfileServiceStub
from cohortflow.segments.v1 import segments_pb2 as spb
from cohortflow.segments.v1.segments_pb2_grpc import SegmentServiceStub
from cohortflow.types.v1 import types_pb2

from services.cli.client import CliError, Connection, Target
from services.cli.output import enum_label
from services.cli.segment_apply import Applied
from services.common.campaign_form import trigger_text

LIFECYCLE_ORDER = ("new", "active", "loyal", "reactivated", "dormant", "churned")
_ENTERED = changes_pb2.MembershipChanged.DIRECTION_ENTERED
INBOX_EVERY_S = 2.0  # how often the newest in-app messages are looked up
INBOX_USERS = 8  # of this many users who entered a segment most recently


@dataclass(frozen=True)
class SegmentRow:
    segment_id: str
    display_name: str
    state: str  # building, active, archived, missing
    version: int
    active_version: int
    building_version: int
    size: int


@dataclass(frozen=True)
class CampaignRow:
    key: str
    campaign_id: str
    name: str
    trigger: str
    triggered: int = 0
    sent: int = 0
    pending: int = 0
    # Users in the control group (deliberately sent nothing).
    control: int = 0
    # Why the others got nothing: suppression, cancellation and failure reasons.
    not_sent: tuple[tuple[str, int], ...] = ()

    @property
    def suppressed(self) -> int:
        return sum(n for _, n in self.not_sent)

    def reasons(self, most: int = 3) -> str:
        """`reentry 55, left_segment 12, no_consent 3`: the commonest first."""
        return ", ".join(f"{why} {n:,}" for why, n in self.not_sent[:most]) or "-"


@dataclass(frozen=True)
class InboxLine:
    user_id: str
    campaign: str
    title: str
    body: str
    created_s: float


@dataclass
class Snapshot:
    lifecycle: dict[str, int] = field(default_factory=dict)
    total_users: int = 0
    # Log position the projector has read up to.
    position: int = 0
    segments: list[SegmentRow] = field(default_factory=list)
    campaigns: list[CampaignRow] = field(default_factory=list)
    messages: list[InboxLine] = field(default_factory=list)
    entered: Counter[str] = field(default_factory=Counter)
    exited: Counter[str] = field(default_factory=Counter)
    # The last poll's failure, if any (the dashboard keeps the figures it had).
    problem: str = ""

    @property
    def building(self) -> bool:
        return any(s.state == "building" or s.building_version for s in self.segments)

    def settled_figures(self) -> tuple[object, ...]:
        """What must stop moving before a --once run prints its summary."""
        return (self.position, tuple(self.campaigns), tuple(self.segments))


def campaign_row(
    key: str, campaign: cpb.Campaign, stats: cpb.GetCampaignStatsResponse
) -> CampaignRow:
    counts: Counter[str] = Counter()
    why: Counter[str] = Counter()
    for group in stats.groups:
        counts["triggered"] += group.triggered
        if group.is_control:
            counts["control"] += group.triggered
            continue
        counts["sent"] += group.sent
        counts["pending"] += group.pending
        why.update(group.suppressed)
        why.update(group.cancelled)
        if group.failed:
            why["failed"] += group.failed
    if stats.global_holdout:
        why["global_holdout"] += stats.global_holdout
    return CampaignRow(
        key=key,
        campaign_id=campaign.campaign_id,
        name=campaign.name,
        trigger=trigger_text(campaign),
        not_sent=tuple(sorted(why.items(), key=lambda item: (-item[1], item[0]))),
        **counts,
    )


class MembershipWatch:
    """Counts entries and exits after a log position and remembers who entered last."""

    def __init__(self, target: Target, after_position: int) -> None:
        self.target = target
        self.after_position = after_position
        self.entered: Counter[str] = Counter()
        self.exited: Counter[str] = Counter()
        self.recent: deque[str] = deque(maxlen=64)
        self.cursor = ""

    async def run(self) -> None:
        """Follow the change stream until cancelled; reconnect after the last cursor."""
        async with Connection(self.target, "projector") as conn:
            stub = SegmentServiceStub(conn.channel)
            while True:
                request = spb.WatchMembershipChangesRequest(
                    after_position=self.after_position, after_cursor=self.cursor
                )
                with contextlib.suppress(grpc.RpcError):
                    stream = stub.WatchMembershipChanges(request, metadata=self.target.metadata())
                    async for reply in stream:
                        self.cursor = reply.cursor
                        self._count(reply.change)
                await asyncio.sleep(1.0)

    def _count(self, change: changes_pb2.MembershipChanged) -> None:
        if change.direction == _ENTERED:
            self.entered[change.segment_id] += 1
            user = change.header.user_id
            if user in self.recent:
                self.recent.remove(user)
            self.recent.appendleft(user)
        else:
            self.exited[change.segment_id] += 1


class Poller:
    """Reads one Snapshot at a time; failures become `Snapshot.problem`, not exceptions."""

    def __init__(
        self,
        projector: Connection,
        campaign: Connection,
        segment_ids: tuple[str, ...],
        campaigns: list[Applied],
        watch: MembershipWatch | None = None,
    ) -> None:
        self.projector, self.campaign = projector, campaign
        self.segment_ids = segment_ids
        self.campaigns = campaigns
        self.watch = watch
        self.profiles = ProfileServiceStub(projector.channel)
        self.segment_stub = SegmentServiceStub(projector.channel)
        self.campaign_stub = CampaignServiceStub(campaign.channel)
        self.inbox = InboxServiceStub(campaign.channel)
        self.last = Snapshot()
        self._inbox_at = 0.0
        self._defined: dict[str, cpb.Campaign] = {}

    async def poll(self) -> Snapshot:
        snapshot = Snapshot(messages=self.last.messages)
        try:
            await self._lifecycle(snapshot)
            await self._segments(snapshot)
            await self._campaigns(snapshot)
            if self.watch is not None and time.monotonic() - self._inbox_at >= INBOX_EVERY_S:
                self._inbox_at = time.monotonic()
                snapshot.messages = await self._messages(list(self.watch.recent)[:INBOX_USERS])
        except CliError as problem:
            self.last.problem = str(problem)
            return self.last
        if self.watch is not None:
            snapshot.entered = Counter(self.watch.entered)
            snapshot.exited = Counter(self.watch.exited)
        self.last = snapshot
        return snapshot

    async def _lifecycle(self, snapshot: Snapshot) -> None:
        request = profiles_pb2.GetLifecycleSummaryRequest()
        reply = await self.projector.unary(self.profiles.GetLifecycleSummary, request)
        counts = {enum_label(types_pb2.LifecycleState, c.state): c.users for c in reply.counts}
        snapshot.lifecycle = {state: counts.get(state, 0) for state in LIFECYCLE_ORDER}
        snapshot.total_users = reply.total_users
        snapshot.position = reply.position

    async def _segments(self, snapshot: Snapshot) -> None:
        found: dict[str, spb.Segment] = {}
        token = ""
        while True:
            request = spb.ListSegmentsRequest(page_size=500, page_token=token, show_archived=True)
            page = await self.projector.unary(self.segment_stub.ListSegments, request)
            found.update((s.segment_id, s) for s in page.segments)
            token = page.next_page_token
            if not token:
                break
        for sid in self.segment_ids:
            s = found.get(sid)
            if s is None:
                snapshot.segments.append(SegmentRow(sid, sid, "missing", 0, 0, 0, 0))
                continue
            snapshot.segments.append(
                SegmentRow(
                    segment_id=sid,
                    display_name=s.display_name,
                    state=enum_label(spb.Segment.State, s.state),
                    version=s.version,
                    active_version=s.active_version,
                    building_version=s.building_version,
                    size=s.size,
                )
            )

    async def _campaigns(self, snapshot: Snapshot) -> None:
        for applied in self.campaigns:
            cid = applied.ident
            if cid not in self._defined:
                got = await self.campaign.unary(
                    self.campaign_stub.GetCampaign, cpb.GetCampaignRequest(campaign_id=cid)
                )
                self._defined[cid] = got.campaign
            stats = await self.campaign.unary(
                self.campaign_stub.GetCampaignStats, cpb.GetCampaignStatsRequest(campaign_id=cid)
            )
            snapshot.campaigns.append(campaign_row(applied.name, self._defined[cid], stats))

    def _name(self, campaign_id: str) -> str:
        known = self._defined.get(campaign_id)
        return known.name if known is not None else campaign_id

    async def _messages(self, users: list[str]) -> list[InboxLine]:
        lines: list[InboxLine] = []
        for user in users:
            reply = await self.campaign.unary(
                self.inbox.ListInboxMessages,
                inbox_pb2.ListInboxMessagesRequest(user_id=user, page_size=3),
            )
            for m in reply.messages:
                lines.append(
                    InboxLine(
                        user_id=user,
                        campaign=self._name(m.campaign_id),
                        title=m.title,
                        body=m.body,
                        created_s=m.create_time.seconds + m.create_time.nanos / 1e9,
                    )
                )
        lines.sort(key=lambda line: line.created_s, reverse=True)
        return lines[:6] if lines else self.last.messages
