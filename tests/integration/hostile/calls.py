"""Calling any RPC of the suite generically (typed or raw bytes) and judging the answer.

Methods come from the descriptors of every generated cohortflow proto module, so a new
RPC or service is swept without a change here (`test_every_served_service_is_swept`
checks the servers serve exactly these services).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cohortflow
import grpc
import psycopg
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.hostile import message_class
from tests.support.ingest import auth
from tests.support.pipeline import Pipeline

NEVER = {
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.UNIMPLEMENTED,
}
# What internal exception text looks like; none of it may reach a client.
LEAKS = ("Traceback", "Exception", "Error:", "psycopg", "<class", 'File "', "exception")
TIMEOUT_S = 10.0
STREAM_READ_S = 0.6


def _all_methods() -> list[MethodDescriptor]:
    found: dict[str, MethodDescriptor] = {}
    for info in pkgutil.walk_packages(cohortflow.__path__, "cohortflow."):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(info.name)
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                found[f"/{service.full_name}/{method.name}"] = method
    return [found[name] for name in sorted(found)]


METHODS = _all_methods()


def path_of(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


@dataclass
class Tenant:
    app_id: str
    key: str
    user_ids: list[str] = field(default_factory=list)
    segment_ids: list[str] = field(default_factory=list)
    campaign_ids: list[str] = field(default_factory=list)
    other_ids: list[str] = field(default_factory=list)  # message, send and change ids
    tokens: list[str] = field(default_factory=list)  # page tokens and watch cursors
    positions: list[int] = field(default_factory=list)

    @property
    def tag(self) -> str:
        """Marks everything this app stored, so it can be searched for in any answer."""
        return f"T{self.app_id.upper()}X"

    @property
    def metadata(self) -> list[tuple[str, str]]:
        return auth(self.key)

    def words(self) -> list[str]:
        return [
            *self.user_ids,
            *self.segment_ids,
            *self.campaign_ids,
            *self.other_ids,
            *self.tokens,
        ]

    def private_bytes(self) -> list[bytes]:
        """Ids only this app has (segment ids such as "vip" are shared by design)."""
        return [i.encode() for i in (*self.user_ids, *self.campaign_ids, *self.other_ids)]


@dataclass
class Outcome:
    code: grpc.StatusCode
    replies: list[bytes]
    message: str = ""
    status: status_pb2.Status | None = None

    def violations(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for detail in self.status.details if self.status else []:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                out.extend((v.field, v.description) for v in bad.field_violations)
        return out

    def text(self) -> bytes:
        """Everything the client received, for searching."""
        status = self.status.SerializeToString() if self.status else b""
        return b"".join(self.replies) + self.message.encode() + status


def _identity(data: bytes) -> bytes:
    return data


def call(
    channel: grpc.Channel,
    method: MethodDescriptor,
    request: bytes,
    metadata: list[tuple[str, str]] | None,
) -> Outcome:
    """Send raw request bytes to `method`; a stream is read for STREAM_READ_S at most."""
    path = path_of(method)
    try:
        if method.server_streaming:
            stream = channel.unary_stream(
                path, request_serializer=_identity, response_deserializer=_identity
            )(request, metadata=metadata, timeout=STREAM_READ_S)
            replies: list[bytes] = []
            try:
                replies.extend(stream)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:  # type: ignore[attr-defined]
                    raise
            return Outcome(grpc.StatusCode.OK, replies)
        reply = channel.unary_unary(
            path, request_serializer=_identity, response_deserializer=_identity
        )(request, metadata=metadata, timeout=TIMEOUT_S)
        return Outcome(grpc.StatusCode.OK, [reply])
    except grpc.RpcError as error:
        trailers = dict(error.trailing_metadata() or ())  # type: ignore[attr-defined]
        blob = trailers.get("grpc-status-details-bin")
        return Outcome(
            error.code(),  # type: ignore[attr-defined]
            [],
            error.details() or "",  # type: ignore[attr-defined]
            status_pb2.Status.FromString(blob) if blob else None,
        )


def judge(outcome: Outcome, what: str) -> None:
    """No INTERNAL/UNKNOWN, no stalled call, bad input explained, no internal text."""
    assert outcome.code not in NEVER, f"{what}: {outcome.code} {outcome.message}"
    # Streams are read for STREAM_READ_S and then left (see `call`): never a deadline here.
    assert outcome.code != grpc.StatusCode.DEADLINE_EXCEEDED, f"{what}: stalled"
    if outcome.code == grpc.StatusCode.INVALID_ARGUMENT:
        assert outcome.violations(), f"{what}: INVALID_ARGUMENT without field violations"
    for leak in LEAKS:
        assert leak not in outcome.message, f"{what}: internal text {outcome.message!r}"


@dataclass
class Suite:
    pipeline: Pipeline
    database_url: str
    tenants: dict[str, Tenant]
    channels: dict[str, grpc.Channel]
    db: psycopg.Connection
    # Other apps' private ids each app has sent so far (so may have stored as its own data).
    sent: dict[str, set[bytes]] = field(default_factory=dict)

    @classmethod
    def of(cls, pipeline: Pipeline, database_url: str, apps: dict[str, str]) -> Suite:
        by_package = {
            "cohortflow.ingest.": pipeline.ingest_address,
            "cohortflow.profiles.": pipeline.projector_address,
            "cohortflow.segments.": pipeline.projector_address,
            "cohortflow.operations.": pipeline.projector_address,
            "cohortflow.analytics.": pipeline.projector_address,
            "cohortflow.campaigns.": pipeline.campaign_address,
        }
        channels = {}
        for method in METHODS:
            service = method.containing_service.full_name
            (address,) = [a for prefix, a in by_package.items() if service.startswith(prefix)]
            channels[service] = grpc.insecure_channel(address)
        tenants = {app: Tenant(app, key) for app, key in apps.items()}
        db = psycopg.connect(database_url, autocommit=True)
        return cls(pipeline, database_url, tenants, channels, db)

    def send(self, caller: Tenant | None, method: MethodDescriptor, request: bytes) -> Outcome:
        """A call as `caller` (None: without a key), remembering which of the other apps'
        ids it carried."""
        if caller is not None:
            sent = self.sent.setdefault(caller.app_id, set())
            for other in self.tenants.values():
                if other is not caller:
                    sent.update(i for i in other.private_bytes() if i in request)
        return call(self.channel(method), method, request, caller.metadata if caller else None)

    def channel(self, method: MethodDescriptor) -> grpc.Channel:
        return self.channels[method.containing_service.full_name]

    def _method(self, path: str) -> MethodDescriptor:
        (method,) = [m for m in METHODS if path_of(m) == path]
        return method

    def ok(self, tenant: Tenant, path: str, request: Message) -> Any:
        """A call that must succeed; its typed answer."""
        method = self._method(path)
        outcome = call(self.channel(method), method, request.SerializeToString(), tenant.metadata)
        assert outcome.code == grpc.StatusCode.OK, f"{path}: {outcome.code} {outcome.message}"
        return message_class(method.output_type).FromString(outcome.replies[0])

    def first_of_stream(self, tenant: Tenant, path: str, request: Message) -> Any:
        method = self._method(path)
        outcome = call(self.channel(method), method, request.SerializeToString(), tenant.metadata)
        assert outcome.code == grpc.StatusCode.OK and outcome.replies, path
        return message_class(method.output_type).FromString(outcome.replies[0])

    def serving(self, method: MethodDescriptor) -> bool:
        health = health_pb2_grpc.HealthStub(self.channel(method))
        reply = health.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S)
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def served_services(self) -> set[str]:
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        names: set[str] = set()
        for channel in set(self.channels.values()):
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            for reply in stub.ServerReflectionInfo(iter([request]), timeout=TIMEOUT_S):
                names.update(s.name for s in reply.list_services_response.service)
        return {n for n in names if n.startswith("cohortflow.")}

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
        self.db.close()

    def stored_rows(self) -> tuple[int, int, int]:
        """What API calls write: log events (except the builder's Segment.Built), campaign
        events (definitions and policies), inbox messages marked read."""
        row = self.db.execute(
            "SELECT (SELECT count(*) FROM cohortflow_events WHERE topic NOT LIKE '%Built'),"
            " (SELECT count(*) FROM campaigns_events),"
            " (SELECT count(read_at) FROM campaign_inbox)"
        ).fetchone()
        assert row is not None
        return (int(row[0]), int(row[1]), int(row[2]))


Check = Callable[[Outcome], None]
