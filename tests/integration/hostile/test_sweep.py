"""Every RPC of every service, fed hostile typed messages and raw random bytes.

For each request: never INTERNAL / UNKNOWN (nor a unary call left hanging), bad input is
INVALID_ARGUMENT with field violations and no internal text, nothing is stored for a
refused request; afterwards the service still says SERVING and answers a normal call of
the same app and of another app.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import grpc
import pytest
from cohortflow.analytics.v1 import analytics_pb2
from cohortflow.campaigns.v1 import campaigns_pb2, inbox_pb2
from cohortflow.ingest.v1 import history_pb2, ingest_pb2, privacy_pb2
from cohortflow.operations.v1 import operations_pb2
from cohortflow.profiles.v1 import profiles_pb2
from cohortflow.segments.v1 import segments_pb2
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.hostile.calls import (
    METHODS,
    Outcome,
    Suite,
    Tenant,
    judge,
    path_of,
)
from tests.support.hostile import Palette, messages, raw_requests

# COHORTFLOW_HOSTILE_SCALE=10 runs ten times the examples (the default keeps the whole
# sweep near a minute on a 2-core machine).
SCALE = float(os.environ.get("COHORTFLOW_HOSTILE_SCALE", "1"))
TYPED_EXAMPLES = max(1, int(18 * SCALE))
RAW_EXAMPLES = max(1, int(10 * SCALE))
SWEEP = settings(
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
INGEST = "cohortflow.ingest.v1.IngestService"

# One harmless call per service, to prove it still answers; a new service needs one here.
NORMAL: dict[str, tuple[str, Callable[[Tenant], Message]]] = {
    INGEST: (
        "Track",
        lambda t: ingest_pb2.TrackRequest(
            event=ingest_pb2.Event(event_id=f"alive-{t.app_id}", user_id="alive", name="Alive")
        ),
    ),
    "cohortflow.ingest.v1.HistoryImportService": (
        "ListHistoryImports",
        lambda t: history_pb2.ListHistoryImportsRequest(page_size=1),
    ),
    # Idempotent by its request id: each tenant erases one user nobody uses, once.
    "cohortflow.ingest.v1.PrivacyService": (
        "EraseUser",
        lambda t: privacy_pb2.EraseUserRequest(
            user_id="sweep-nobody", requested_by="hostile sweep", request_id="sweep-normal"
        ),
    ),
    "cohortflow.profiles.v1.ProfileService": (
        "GetLifecycleSummary",
        lambda t: profiles_pb2.GetLifecycleSummaryRequest(),
    ),
    "cohortflow.segments.v1.SegmentService": (
        "ListSegments",
        lambda t: segments_pb2.ListSegmentsRequest(page_size=1),
    ),
    "cohortflow.campaigns.v1.CampaignService": (
        "GetMessagingPolicy",
        lambda t: campaigns_pb2.GetMessagingPolicyRequest(),
    ),
    "cohortflow.analytics.v1.AnalyticsService": (
        "GetRfmGrid",
        lambda t: analytics_pb2.GetRfmGridRequest(),
    ),
    "cohortflow.operations.v1.OperationsService": (
        "ListQuarantinedEvents",
        lambda t: operations_pb2.ListQuarantinedEventsRequest(page_size=1),
    ),
    "cohortflow.campaigns.v1.InboxService": (
        "ListInboxMessages",
        lambda t: inbox_pb2.ListInboxMessagesRequest(user_id=t.user_ids[0]),
    ),
}


def _ids(method: MethodDescriptor) -> str:
    return path_of(method).removeprefix("/cohortflow.")


def _stored_by(method: MethodDescriptor, outcome: Outcome) -> int:
    """Log rows a call may add: accepted events of an ingest call, nothing if refused."""
    if outcome.code != grpc.StatusCode.OK:
        return 0
    if method.containing_service.full_name != INGEST:
        return -1  # a write that succeeded: anything may be stored
    response = {
        "Track": ingest_pb2.TrackResponse,
        "TrackBatch": ingest_pb2.TrackBatchResponse,
        "Identify": ingest_pb2.IdentifyResponse,
    }[method.name].FromString(outcome.replies[0])
    results = list(response.results) if method.name == "TrackBatch" else [response.result]
    return sum(r.status == ingest_pb2.EventResult.STATUS_ACCEPTED for r in results)


def _still_answers(suite: Suite, method: MethodDescriptor, *tenants: Tenant) -> None:
    assert suite.serving(method), f"{_ids(method)}: health is not SERVING"
    name, build = NORMAL[method.containing_service.full_name]
    for tenant in tenants:
        suite.ok(tenant, f"/{method.containing_service.full_name}/{name}", build(tenant))


def _hostile_call(
    suite: Suite, method: MethodDescriptor, request: bytes, caller: Tenant | None
) -> Outcome:
    before = suite.stored_rows()
    outcome = suite.send(caller, method, request)
    judge(outcome, _ids(method))
    if caller is None:
        assert outcome.code == grpc.StatusCode.UNAUTHENTICATED, outcome.code
    after = suite.stored_rows()
    added = _stored_by(method, outcome)
    if added >= 0:
        assert after[0] - before[0] == added, f"{_ids(method)} stored {after} (was {before})"
        assert after[1:] == before[1:] or outcome.code == grpc.StatusCode.OK
    return outcome


def test_every_served_service_is_swept(suite: Suite) -> None:
    swept = {m.containing_service.full_name for m in METHODS}
    assert suite.served_services() == swept
    assert set(NORMAL) == swept
    assert len(METHODS) >= 32


@pytest.mark.parametrize("method", METHODS, ids=_ids)
def test_typed_hostile_requests_never_break_a_service(
    suite: Suite, method: MethodDescriptor
) -> None:
    tenants = list(suite.tenants.values())
    palette = Palette(words=tuple(w for t in tenants for w in t.words()))

    @settings(SWEEP, max_examples=TYPED_EXAMPLES)
    @given(request=messages(method.input_type, palette), which=st.integers(0, 1))
    def sweep(request: Message, which: int) -> None:
        caller, other = tenants[which], tenants[1 - which]
        _hostile_call(suite, method, request.SerializeToString(), caller)
        _still_answers(suite, method, caller, other)

    sweep()


@pytest.mark.parametrize("method", METHODS, ids=_ids)
def test_raw_bytes_never_break_a_service(suite: Suite, method: MethodDescriptor) -> None:
    tenants = list(suite.tenants.values())

    @settings(SWEEP, max_examples=RAW_EXAMPLES)
    @given(request=raw_requests(), caller=st.sampled_from([None, *tenants]))
    def sweep(request: bytes, caller: Tenant | None) -> None:
        _hostile_call(suite, method, request, caller)
        _still_answers(suite, method, *tenants)

    sweep()
