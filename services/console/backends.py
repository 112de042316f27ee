"""The console's gRPC clients: one channel per service, the app's key per call.

`Backends.for_app(app_id)` is the only way to a stub, and it takes the key of that
app from the services' key configuration; callers get an app id only after the
signed-in user's binding to it was checked (services.console.web.access).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from cohortflow.analytics.v1.analytics_pb2_grpc import AnalyticsServiceStub
from cohortflow.campaigns.v1 import campaigns_pb2
from cohortflow.campaigns.v1.campaigns_pb2_grpc import CampaignServiceStub
from cohortflow.campaigns.v1.inbox_pb2_grpc import InboxServiceStub
from cohortflow.profiles.v1.profiles_pb2_grpc import ProfileServiceStub
from cohortflow.segments.v1.segments_pb2_grpc import SegmentServiceStub
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.grpc.errors import bad_request_of

_CAMPAIGN_SERVICE = campaigns_pb2.DESCRIPTOR.services_by_name["CampaignService"].full_name

# gRPC status -> HTTP status of the console's answer.
_HTTP = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 502,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNAVAILABLE: 503,
}


class BackendError(Exception):
    """A failed call, ready to show: HTTP status, message and field violations."""

    def __init__(self, status: int, message: str, fields: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields

    def as_json(self) -> dict[str, Any]:
        return {
            "error": self.message,
            "fields": [{"field": f, "message": m} for f, m in self.fields],
        }


class NoKeyError(Exception):
    """The console holds no API key for an app a user is bound to."""


@dataclass(frozen=True)
class AppClients:
    """Stubs of every service, each call sent with one app's key."""

    app_id: str
    profiles: ProfileServiceStub
    segments: SegmentServiceStub
    analytics: AnalyticsServiceStub
    campaigns: CampaignServiceStub
    inbox: InboxServiceStub
    key: str
    timeout_s: float

    async def call(self, method: Any, request: Any) -> Any:
        """`await clients.call(clients.segments.GetSegment, request)`, or BackendError."""
        try:
            return await method(
                request,
                metadata=(("authorization", f"Bearer {self.key}"),),
                timeout=self.timeout_s,
            )
        except grpc.aio.AioRpcError as error:
            raise BackendError(
                _HTTP.get(error.code(), 502),
                error.details() or error.code().name,
                bad_request_of(error),
            ) from None


class Backends:
    def __init__(
        self, projector: str, campaign: str, keys: Iterable[tuple[str, str]], timeout_s: float
    ) -> None:
        self._keys: dict[str, str] = {}
        for app_id, key in keys:
            self._keys.setdefault(app_id, key)
        self._projector = grpc.aio.insecure_channel(projector)
        self._campaign = grpc.aio.insecure_channel(campaign)
        self._timeout_s = timeout_s
        self._clients: dict[str, AppClients] = {}

    def for_app(self, app_id: str) -> AppClients:
        """Clients that speak for `app_id`; NoKeyError if there is no key for it."""
        clients = self._clients.get(app_id)
        if clients is None:
            key = self._keys.get(app_id)
            if key is None:
                raise NoKeyError(app_id)
            clients = AppClients(
                app_id=app_id,
                profiles=ProfileServiceStub(self._projector),
                segments=SegmentServiceStub(self._projector),
                analytics=AnalyticsServiceStub(self._projector),
                campaigns=CampaignServiceStub(self._campaign),
                inbox=InboxServiceStub(self._campaign),
                key=key,
                timeout_s=self._timeout_s,
            )
            self._clients[app_id] = clients
        return clients

    async def check_serving(self, backend: str, timeout_s: float) -> None:
        """Raises unless `backend` ("projector" or "campaign") says SERVING for what the
        console uses: the projector's reads (its overall health) and the campaign API."""
        channel, name = {
            "projector": (self._projector, ""),
            "campaign": (self._campaign, _CAMPAIGN_SERVICE),
        }[backend]
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=name), timeout=timeout_s
        )
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            raise ConnectionError(f"{backend} says {status}")

    async def close(self) -> None:
        await self._projector.close()
        await self._campaign.close()
