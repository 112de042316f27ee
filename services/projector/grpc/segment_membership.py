"""SegmentService's membership reads: who is in a segment (now or at a past time), which
segments a user is in, and the changes of membership, listed or watched.

A part of `segments.SegmentServicer`, which holds the read models these calls translate.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from cohortflow.segments.v1 import segments_pb2

from services.common.domain_errors import FieldViolation, InvalidInput
from services.common.grpc.auth import current_app_id
from services.common.grpc.paging import BadPageToken, decode_token, encode_token, page_size
from services.projector.adapters.history_queries import HistoryQueries
from services.projector.adapters.segment_queries import SegmentQueries
from services.projector.grpc.history_calls import run_query
from services.projector.grpc.segment_messages import membership_changed, us_to_timestamp
from services.projector.service_layer.segment_commands import SegmentNotFound

# Changes read per query while watching; a full page is followed at once by the next.
WATCH_PAGE = 500


def page_after(token: str, size: int, kind: type = str) -> Any:
    """The `after` of a page token (None for the first page), of type `kind`."""
    if size < 0:
        raise InvalidInput([FieldViolation("page_size", "must not be negative")])
    try:
        cursor = decode_token(token, {"after": kind})
    except BadPageToken as error:
        raise InvalidInput([FieldViolation("page_token", str(error))]) from None
    return cursor["after"] if cursor else None


def watch_cursor(token: str, databases: int) -> list[int]:
    """The last change id read from each database (one with one database, `{"id": n}`;
    `{"ids": "n0.n1..."}` with several), from a cursor `watch_token` made."""
    fields: dict[str, type] = {"id": int} if databases == 1 else {"ids": str}
    try:
        cursor = decode_token(token, fields)
    except BadPageToken as error:
        raise InvalidInput([FieldViolation("after_cursor", str(error))]) from None
    if cursor is None:
        return [0] * databases
    if databases == 1:
        return [cursor["id"]]
    ids = cursor["ids"].split(".")
    if len(ids) != databases or not all(i.isdigit() and len(i) < 19 for i in ids):
        raise InvalidInput(
            [FieldViolation("after_cursor", "not a cursor returned by this deployment")]
        )
    return [int(i) for i in ids]


def watch_token(after_ids: list[int]) -> str:
    if len(after_ids) == 1:
        return encode_token({"id": after_ids[0]})
    return encode_token({"ids": ".".join(str(i) for i in after_ids)})


class MembershipCalls:
    """The membership RPCs of SegmentService, over the servicer's read models."""

    _queries: SegmentQueries
    _history: HistoryQueries
    _caught_up: Callable[[grpc.aio.ServicerContext, int], Any]
    _watch_poll_s: float

    async def ListSegmentMembers(
        self,
        request: segments_pb2.ListSegmentMembersRequest,
        context: grpc.aio.ServicerContext,
    ) -> segments_pb2.ListSegmentMembersResponse:
        cursor = page_after(request.page_token, request.page_size)
        await self._caught_up(context, request.min_position)
        app_id = current_app_id()
        row = await asyncio.to_thread(self._queries.segment, app_id, request.segment_id)
        if row is None:
            raise SegmentNotFound(request.segment_id)
        size = page_size(request.page_size)
        if request.HasField("as_of_time"):
            rows, total = await run_query(
                context,
                self._history.timeout_s,
                self._history.members_as_of,
                app_id,
                request.segment_id,
                request.as_of_time.ToMicroseconds(),
                cursor or "",
                size + 1,
            )
        else:
            rows, total = await asyncio.to_thread(
                self._queries.members, app_id, request.segment_id, cursor or "", size + 1
            )
        more = len(rows) > size
        rows = rows[:size]
        return segments_pb2.ListSegmentMembersResponse(
            members=[
                segments_pb2.Member(user_id=r["user_id"], since_time=us_to_timestamp(r["since_us"]))
                for r in rows
            ],
            next_page_token=encode_token({"after": rows[-1]["user_id"]}) if more else "",
            total_size=total,
            version=row["active_version"],
        )

    async def CheckMembership(
        self, request: segments_pb2.CheckMembershipRequest, context: grpc.aio.ServicerContext
    ) -> segments_pb2.CheckMembershipResponse:
        if not request.user_id:
            raise InvalidInput([FieldViolation("user_id", "is required")])
        position = await self._caught_up(context, request.min_position)
        app_id = current_app_id()
        segment = await asyncio.to_thread(self._queries.segment, app_id, request.segment_id)
        if segment is None:
            raise SegmentNotFound(request.segment_id)
        if request.HasField("as_of_time"):
            row = await run_query(
                context,
                self._history.timeout_s,
                self._history.membership_as_of,
                app_id,
                request.segment_id,
                request.user_id,
                request.as_of_time.ToMicroseconds(),
            )
        else:
            row = await asyncio.to_thread(
                self._queries.membership, app_id, request.segment_id, request.user_id
            )
        return segments_pb2.CheckMembershipResponse(
            member=row is not None,
            since_time=us_to_timestamp(row["since_us"]) if row else None,
            version=row["version"] if row else segment["active_version"],
            position=position,
        )

    async def ListUserSegments(
        self, request: segments_pb2.ListUserSegmentsRequest, context: grpc.aio.ServicerContext
    ) -> segments_pb2.ListUserSegmentsResponse:
        if not request.user_id:
            raise InvalidInput([FieldViolation("user_id", "is required")])
        position = await self._caught_up(context, request.min_position)
        rows = await asyncio.to_thread(
            self._queries.user_segments, current_app_id(), request.user_id
        )
        return segments_pb2.ListUserSegmentsResponse(
            memberships=[
                segments_pb2.Membership(
                    segment_id=r["segment_id"],
                    version=r["version"],
                    since_time=us_to_timestamp(r["since_us"]),
                )
                for r in rows
            ],
            position=position,
        )

    async def WatchMembershipChanges(
        self,
        request: segments_pb2.WatchMembershipChangesRequest,
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[segments_pb2.WatchMembershipChangesResponse]:
        app_id = current_app_id()
        after_ids = watch_cursor(request.after_cursor, self._queries.databases)
        while not context.done():
            rows = await asyncio.to_thread(
                self._queries.membership_changes,
                app_id,
                request.segment_id,
                after_ids,
                request.after_position,
                WATCH_PAGE,
            )
            for database, row in rows:
                after_ids[database] = row["id"]
                yield segments_pb2.WatchMembershipChangesResponse(
                    change=membership_changed(row), cursor=watch_token(after_ids)
                )
            if len(rows) < WATCH_PAGE:
                await asyncio.sleep(self._watch_poll_s)

    async def ListMembershipHistory(
        self,
        request: segments_pb2.ListMembershipHistoryRequest,
        context: grpc.aio.ServicerContext,
    ) -> segments_pb2.ListMembershipHistoryResponse:
        if not request.user_id:
            raise InvalidInput([FieldViolation("user_id", "is required")])
        cursor = page_after(request.page_token, request.page_size, int)
        await self._caught_up(context, request.min_position)
        size = page_size(request.page_size)
        rows = await run_query(
            context,
            self._history.timeout_s,
            self._history.membership_history,
            current_app_id(),
            request.user_id,
            request.segment_id,
            cursor or 0,
            size + 1,
        )
        more = len(rows) > size
        rows = rows[:size]
        return segments_pb2.ListMembershipHistoryResponse(
            changes=[membership_changed(r) for r in rows],
            next_page_token=encode_token({"after": rows[-1]["sequence"]}) if more else "",
        )
