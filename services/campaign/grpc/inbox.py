"""InboxService: the in-app messages campaigns delivered, read and marked read."""

from __future__ import annotations

import grpc
from cohortflow.campaigns.v1 import inbox_pb2 as pb
from cohortflow.campaigns.v1 import inbox_pb2_grpc as rpc
from psycopg_pool import AsyncConnectionPool

from services.campaign.adapters import reports
from services.campaign.domain.clock import Clock
from services.campaign.domain.validation import Violation
from services.campaign.grpc import paging
from services.common.grpc.auth import current_app_id
from services.common.grpc.errors import abort, invalid_argument

MAX_MARK = 500


class InboxServicer(rpc.InboxServiceServicer):
    def __init__(self, pool: AsyncConnectionPool, clock: Clock) -> None:
        self._pool = pool
        self._clock = clock

    async def ListInboxMessages(
        self, request: pb.ListInboxMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListInboxMessagesResponse:
        app_id = current_app_id()
        problems = [] if request.user_id else [Violation("user_id", "required")]
        offset = paging.decode(request.page_token)
        if offset is None:
            problems.append(Violation("page_token", "not a token we issued"))
        if problems or offset is None:
            await abort(context, invalid_argument(problems))
        size = paging.page_size(request.page_size)
        records, unread = await reports.inbox_page(
            self._pool, app_id, request.user_id, request.unread_only, offset, size + 1
        )
        out = pb.ListInboxMessagesResponse(
            unread_count=unread,
            next_page_token=paging.encode(offset + size) if len(records) > size else "",
        )
        for r in records[:size]:
            message = out.messages.add(
                message_id=r.message_id,
                campaign_id=r.campaign_id,
                title=r.title,
                body=r.body,
                data={str(k): str(v) for k, v in r.data.items()},
            )
            message.create_time.FromDatetime(r.created_at)
            if r.read_at is not None:
                message.read_time.FromDatetime(r.read_at)
        return out

    async def MarkRead(
        self, request: pb.MarkReadRequest, context: grpc.aio.ServicerContext
    ) -> pb.MarkReadResponse:
        app_id = current_app_id()
        problems = [] if request.user_id else [Violation("user_id", "required")]
        if not request.message_ids or len(request.message_ids) > MAX_MARK:
            problems.append(Violation("message_ids", f"name 1 to {MAX_MARK} messages"))
        if problems:
            await abort(context, invalid_argument(problems))
        marked = await reports.mark_read(
            self._pool, app_id, request.user_id, list(request.message_ids), self._clock.now_us()
        )
        return pb.MarkReadResponse(marked=marked)
