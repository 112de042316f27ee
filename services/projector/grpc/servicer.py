"""ProfileService: profiles, lifecycle summaries and timelines from the read models."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import grpc
import orjson
from cohortflow.profiles.v1 import profiles_pb2, profiles_pb2_grpc
from cohortflow.types.v1 import types_pb2
from google.protobuf import timestamp_pb2

from services.common.grpc.auth import current_app_id
from services.common.grpc.errors import (
    FieldViolation,
    abort,
    invalid_argument,
    unavailable,
    user_not_found,
)
from services.common.grpc.paging import BadPageToken, decode_token, encode_token, page_size
from services.common.vocabulary_wire import LIFECYCLE_STATE_PB, RFM_GROUP_PB
from services.eventlog.partitions import decode_position
from services.eventlog.vocabulary import LIFECYCLE_STATES
from services.projector.adapters.queries import ProfileQueries
from services.projector.domain.changes import historical
from services.projector.domain.policy import DAY_US
from services.projector.domain.user import User

_CAUSE_NAMES = {"event", "time", "late_event", "redefinition", "recomputation", "erasure"}


def _ts(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment)
    return ts


def _us(us: int | None) -> timestamp_pb2.Timestamp | None:
    if us is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(us)
    return ts


def _scores(user: User | None, clock_us: int) -> types_pb2.RfmScores | None:
    """The user's RFM scores with the raw values behind them (recency at `clock_us`)."""
    if user is None or len(user.rfm_scores) != 3:
        return None
    recency, frequency, monetary = user.rfm_scores
    scores = types_pb2.RfmScores(recency=recency, frequency=frequency, monetary=monetary)
    if len(user.rfm_values) == 3:
        last, purchases, amount = user.rfm_values
        scores.recency_days = max(0.0, (clock_us - last) / DAY_US)
        scores.purchases = int(purchases)
        scores.monetary_value = float(amount)
    return scores


def _value(value: Any) -> types_pb2.Value:
    if isinstance(value, bool):
        return types_pb2.Value(bool_value=value)
    if isinstance(value, int | float):
        return types_pb2.Value(number_value=float(value))
    if isinstance(value, list):
        return types_pb2.Value(list_value=types_pb2.ValueList(values=[_value(v) for v in value]))
    return types_pb2.Value(string_value=str(value))


def _time_value(value: Any) -> types_pb2.Value:
    if isinstance(value, list):
        return types_pb2.Value(
            list_value=types_pb2.ValueList(values=[_time_value(v) for v in value])
        )
    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(int(value))
    return types_pb2.Value(timestamp_value=ts)


def profile_pb(row: dict[str, Any], position: int) -> profiles_pb2.Profile:
    user = User.unpack(orjson.loads(row["state"])) if row["state"] else None
    traits = {k: _value(v) for k, v in row["traits"].items()}
    traits.update({k: _time_value(v) for k, v in row["time_traits"].items()})
    profile = profiles_pb2.Profile(
        user_id=row["user_id"],
        traits=traits,
        email=row["email"],
        phone=row["phone"],
        push_token=row["push_token"],
        consents=row["consents"],
        timezone=row["timezone"],
        country=row["country"],
        city=row["city"],
        lifecycle_state=LIFECYCLE_STATE_PB.get(
            row["lifecycle_state"], types_pb2.LIFECYCLE_STATE_UNSPECIFIED
        ),
        lifecycle_since_time=_ts(row["lifecycle_since"]),
        usual_interval_days=row["usual_interval_days"],
        rfm_group=RFM_GROUP_PB.get(row["rfm_group"], types_pb2.RFM_GROUP_UNSPECIFIED),
        rfm_scores=_scores(user, row["clock_us"] or 0),
        first_seen_time=_ts(row["first_seen"]),
        last_seen_time=_ts(row["last_seen"]),
        event_count=row["event_count"],
        event_counts=user.event_counts if user else {},
        active_days=row["active_days"],
        position=position,
    )
    if row["latitude"] is not None and row["longitude"] is not None:
        profile.location.CopyFrom(
            types_pb2.LatLng(latitude=row["latitude"], longitude=row["longitude"])
        )
    profile.geo_country, profile.geo_city = row["geo_country"], row["geo_city"]
    if row["geo_latitude"] is not None and row["geo_longitude"] is not None:
        profile.geo_location.CopyFrom(
            types_pb2.LatLng(latitude=row["geo_latitude"], longitude=row["geo_longitude"])
        )
    return profile


def timeline_entry(row: dict[str, Any]) -> profiles_pb2.TimelineEntry:
    entry = profiles_pb2.TimelineEntry(
        user_sequence=row["sequence"],
        change_id=row["change_id"],
        cause_kind=row["cause"],
        cause_event_ids=row["event_ids"],
        cause_event_name=row["event_name"],
        effective_time=_us(row["effective_us"]),
        recorded_time=_us(row["recorded_us"]),
        position=row["position"],
        correction=row["correction"],
        historical=historical(row["effective_us"], row["recorded_us"]),
    )
    if row["kind"] == "lifecycle":
        entry.lifecycle.CopyFrom(
            profiles_pb2.LifecycleTransition(
                from_state=LIFECYCLE_STATE_PB[row["from_value"]],
                to_state=LIFECYCLE_STATE_PB[row["to_value"]],
            )
        )
    else:
        details = row["details"] or {}
        scores = details.get("scores")
        entry.rfm.CopyFrom(
            profiles_pb2.RfmTransition(
                from_group=RFM_GROUP_PB[row["from_value"]],
                to_group=RFM_GROUP_PB[row["to_value"]],
                scores=types_pb2.RfmScores(
                    recency=scores[0],
                    frequency=scores[1],
                    monetary=scores[2],
                    recency_days=details.get("recency_days", 0.0),
                    purchases=details.get("purchases", 0),
                    monetary_value=details.get("amount", 0.0),
                )
                if scores
                else None,
            )
        )
    return entry


class ProfileServicer(profiles_pb2_grpc.ProfileServiceServicer):
    def __init__(
        self,
        queries: ProfileQueries,
        committed_position: Callable[[int], int],
        *,
        read_wait_s: float = 10.0,
        partitions: int = 1,
    ) -> None:
        """`committed_position(partition)`: the position (naming its partition) the read
        models of that partition have committed."""
        self._queries = queries
        self._committed = committed_position
        self._read_wait_s = read_wait_s
        self._partitions = partitions

    async def caught_up(self, context: grpc.aio.ServicerContext, min_position: int) -> int:
        """Wait until the projector committed `min_position` (a position of ingest or of a
        change: it names its partition); the position now reached in that partition."""
        if min_position < 0:
            await abort(
                context,
                invalid_argument([FieldViolation("min_position", "must not be negative")]),
            )
        partition = decode_position(min_position)[0]
        if partition >= self._partitions:
            await abort(
                context,
                invalid_argument(
                    [
                        FieldViolation(
                            "min_position",
                            f"names partition {partition}; this deployment has"
                            f" {self._partitions} (positions come from ingest or the changes)",
                        )
                    ]
                ),
            )
        deadline = time.monotonic() + self._read_wait_s
        remaining = context.time_remaining()
        if remaining is not None:
            deadline = min(deadline, time.monotonic() + remaining - 0.05)
        position = self._committed(partition)
        while position < min_position:
            if time.monotonic() >= deadline:
                await abort(
                    context,
                    unavailable(
                        f"the projector has reached position {position}, not yet {min_position};"
                        " retry"
                    ),
                )
            await asyncio.sleep(0.01)
            position = self._committed(partition)
        return position

    async def GetProfile(
        self, request: profiles_pb2.GetProfileRequest, context: grpc.aio.ServicerContext
    ) -> profiles_pb2.GetProfileResponse:
        if not request.user_id:
            await abort(context, invalid_argument([FieldViolation("user_id", "is required")]))
        position = await self.caught_up(context, request.min_position)
        row = await asyncio.to_thread(self._queries.profile, current_app_id(), request.user_id)
        if row is None:
            await abort(context, user_not_found(request.user_id))
        return profiles_pb2.GetProfileResponse(profile=profile_pb(row, position))

    async def GetLifecycleSummary(
        self,
        request: profiles_pb2.GetLifecycleSummaryRequest,
        context: grpc.aio.ServicerContext,
    ) -> profiles_pb2.GetLifecycleSummaryResponse:
        position = await self.caught_up(context, request.min_position)
        as_of = request.as_of_time.ToMicroseconds() if request.HasField("as_of_time") else None
        counts = await asyncio.to_thread(self._queries.lifecycle_counts, current_app_id(), as_of)
        response = profiles_pb2.GetLifecycleSummaryResponse(
            counts=[
                profiles_pb2.StateCount(state=LIFECYCLE_STATE_PB[state], users=counts.get(state, 0))
                for state in LIFECYCLE_STATES
            ],
            total_users=sum(counts.values()),
            position=position,
        )
        if as_of is not None:
            response.as_of_time.CopyFrom(request.as_of_time)
        return response

    async def ListUserTimeline(
        self, request: profiles_pb2.ListUserTimelineRequest, context: grpc.aio.ServicerContext
    ) -> profiles_pb2.ListUserTimelineResponse:
        if not request.user_id:
            await abort(context, invalid_argument([FieldViolation("user_id", "is required")]))
        if request.page_size < 0:
            await abort(
                context, invalid_argument([FieldViolation("page_size", "must not be negative")])
            )
        try:
            cursor = decode_token(request.page_token, {"after": int})
        except BadPageToken as error:
            await abort(context, invalid_argument([FieldViolation("page_token", str(error))]))
        await self.caught_up(context, request.min_position)
        size = page_size(request.page_size)
        after = cursor["after"] if cursor else 0
        rows = await asyncio.to_thread(
            self._queries.timeline, current_app_id(), request.user_id, after, size + 1
        )
        more = len(rows) > size
        rows = rows[:size]
        return profiles_pb2.ListUserTimelineResponse(
            entries=[timeline_entry(row) for row in rows],
            next_page_token=encode_token({"after": rows[-1]["sequence"]}) if more else "",
        )
