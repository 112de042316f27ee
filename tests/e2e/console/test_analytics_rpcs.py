"""AnalyticsService refuses bad requests with INVALID_ARGUMENT naming the field, and answers
only for the calling key's app."""

from __future__ import annotations

import grpc
import pytest
from cohortflow.analytics.v1 import analytics_pb2 as pb
from cohortflow.analytics.v1 import analytics_pb2_grpc
from cohortflow.segments.v1 import segments_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.grpc.errors import bad_request_of
from tests.support.console import ConsoleStack, grpc_auth

pytestmark = pytest.mark.e2e


def _ts(seconds: int, nanos: int = 0) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


def _refused(call, request, field: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, metadata=grpc_auth("shop"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
    assert field in [f for f, _ in bad_request_of(caught.value)], bad_request_of(caught.value)


def test_bad_ranges_ids_and_drafts_are_invalid_arguments(stack: ConsoleStack):
    with grpc.insecure_channel(stack.pipeline.projector_address) as channel:
        stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)
        _refused(
            stub.GetLifecycleSeries,
            pb.GetLifecycleSeriesRequest(start_time=_ts(10 * 86_400), end_time=_ts(86_400)),
            "end_time",
        )
        _refused(
            stub.GetLifecycleSeries,
            pb.GetLifecycleSeriesRequest(start_time=_ts(0), end_time=_ts(20_000 * 86_400)),
            "start_time",
        )
        _refused(
            stub.GetLifecycleSeries,
            pb.GetLifecycleSeriesRequest(start_time=_ts(2**62)),
            "start_time",
        )
        _refused(
            stub.GetRfmTransitions,
            pb.GetRfmTransitionsRequest(end_time=_ts(0, nanos=-5)),
            "end_time.nanos",  # the edge checks every Timestamp before the handler runs
        )
        _refused(
            stub.GetLifecycleFlows,
            pb.GetLifecycleFlowsRequest(start_time=_ts(86_400), end_time=_ts(86_400)),
            "end_time",
        )
        _refused(stub.GetSegmentSizeSeries, pb.GetSegmentSizeSeriesRequest(), "segment_ids")
        _refused(
            stub.GetSegmentSizeSeries,
            pb.GetSegmentSizeSeriesRequest(segment_ids=["ok"] * 201),
            "segment_ids",
        )
        _refused(
            stub.GetSegmentSizeSeries,
            pb.GetSegmentSizeSeriesRequest(segment_ids=["ok", "a\x00b"]),
            "segment_ids[1]",
        )
        _refused(
            stub.ValidateSegment,
            pb.ValidateSegmentRequest(segment=segments_pb2.Segment(segment_id="Bad Id")),
            "segment.segment_id",
        )
        _refused(
            stub.ValidateSegment,
            pb.ValidateSegmentRequest(segment=segments_pb2.Segment(segment_id="x")),
            "segment.condition",
        )


def test_without_a_key_nothing_is_answered(stack: ConsoleStack):
    with grpc.insecure_channel(stack.pipeline.projector_address) as channel:
        stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetRfmGrid(pb.GetRfmGridRequest(), timeout=30)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
