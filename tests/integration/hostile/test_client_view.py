"""What a client sees: the README's table for unknown users, segments and campaigns, error
details decodable from protos/ alone, and each hostile-input finding as a regression."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from cohortflow.campaigns.v1 import campaigns_pb2 as cpb
from cohortflow.campaigns.v1 import inbox_pb2
from cohortflow.ingest.v1 import ingest_pb2
from cohortflow.profiles.v1 import profiles_pb2
from cohortflow.segments.v1 import segments_pb2
from cohortflow.types.v1 import types_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from google.rpc import error_details_pb2

from services.common.segment_wire import condition_from_dict
from tests.integration.hostile.calls import METHODS, Outcome, Suite, judge, path_of
from tests.support.hostile import nested

REPO = Path(__file__).resolve().parents[3]
UNKNOWN_USER = "nobody-here"
UNKNOWN_SEGMENT = "no-such-segment"
UNKNOWN_CAMPAIGN = "00000000-0000-4000-8000-000000000000"
PRO = condition_from_dict({"trait": {"key": "plan", "op": "=", "value": "pro"}})
P, S, C, INBOX = (
    "cohortflow.profiles.v1.ProfileService",
    "cohortflow.segments.v1.SegmentService",
    "cohortflow.campaigns.v1.CampaignService",
    "cohortflow.campaigns.v1.InboxService",
)
Expect = str | Callable[[Any], bool]

# The README's table: (RPC, request, NOT_FOUND reason or a check of the answer).
UNKNOWN: list[tuple[str, Message, Expect]] = [
    (f"{P}/GetProfile", profiles_pb2.GetProfileRequest(user_id=UNKNOWN_USER), "USER_NOT_FOUND"),
    (
        f"{P}/ListUserTimeline",
        profiles_pb2.ListUserTimelineRequest(user_id=UNKNOWN_USER),
        lambda r: not r.entries,
    ),
    (
        f"{S}/ListUserSegments",
        segments_pb2.ListUserSegmentsRequest(user_id=UNKNOWN_USER),
        lambda r: not r.memberships,
    ),
    (
        f"{S}/ListMembershipHistory",
        segments_pb2.ListMembershipHistoryRequest(user_id=UNKNOWN_USER),
        lambda r: not r.changes,
    ),
    (
        f"{S}/ListMembershipHistory",
        segments_pb2.ListMembershipHistoryRequest(user_id="x", segment_id=UNKNOWN_SEGMENT),
        lambda r: not r.changes,
    ),
    (
        f"{S}/CheckMembership",
        segments_pb2.CheckMembershipRequest(segment_id="vip", user_id=UNKNOWN_USER),
        lambda r: not r.member,
    ),
    (
        f"{S}/CheckMembership",
        segments_pb2.CheckMembershipRequest(segment_id=UNKNOWN_SEGMENT, user_id="x"),
        "SEGMENT_NOT_FOUND",
    ),
    (
        f"{S}/GetSegment",
        segments_pb2.GetSegmentRequest(segment_id=UNKNOWN_SEGMENT),
        "SEGMENT_NOT_FOUND",
    ),
    (
        f"{S}/GetSegment",
        segments_pb2.GetSegmentRequest(segment_id="vip", version=999),
        "SEGMENT_VERSION_NOT_FOUND",
    ),
    (
        f"{S}/ListSegmentMembers",
        segments_pb2.ListSegmentMembersRequest(segment_id=UNKNOWN_SEGMENT),
        "SEGMENT_NOT_FOUND",
    ),
    (
        f"{S}/UpdateSegment",
        segments_pb2.UpdateSegmentRequest(
            segment=segments_pb2.Segment(segment_id=UNKNOWN_SEGMENT, condition=PRO)
        ),
        "SEGMENT_NOT_FOUND",
    ),
    (
        f"{S}/ArchiveSegment",
        segments_pb2.ArchiveSegmentRequest(segment_id=UNKNOWN_SEGMENT),
        "SEGMENT_NOT_FOUND",
    ),
    (
        f"{S}/WatchSegmentBuild",
        segments_pb2.WatchSegmentBuildRequest(segment_id=UNKNOWN_SEGMENT),
        "SEGMENT_NOT_FOUND",
    ),
    (
        f"{S}/RestoreSegmentVersion",
        segments_pb2.RestoreSegmentVersionRequest(segment_id=UNKNOWN_SEGMENT, version=1),
        "SEGMENT_VERSION_NOT_FOUND",
    ),
    (
        f"{S}/WatchMembershipChanges",
        segments_pb2.WatchMembershipChangesRequest(segment_id=UNKNOWN_SEGMENT),
        lambda replies: replies == [],
    ),
    (
        f"{S}/PreviewSegment",
        segments_pb2.PreviewSegmentRequest(
            segment=segments_pb2.Segment(segment_id=UNKNOWN_SEGMENT, condition=PRO)
        ),
        lambda r: r.live_version == 0,
    ),
    *(
        (f"{C}/{name}", request, "CAMPAIGN_NOT_FOUND")
        for name, request in [
            ("GetCampaign", cpb.GetCampaignRequest(campaign_id=UNKNOWN_CAMPAIGN)),
            ("GetCampaign", cpb.GetCampaignRequest(campaign_id="not-even-a-uuid")),
            ("PauseCampaign", cpb.PauseCampaignRequest(campaign_id=UNKNOWN_CAMPAIGN)),
            ("ResumeCampaign", cpb.ResumeCampaignRequest(campaign_id=UNKNOWN_CAMPAIGN)),
            ("ArchiveCampaign", cpb.ArchiveCampaignRequest(campaign_id=UNKNOWN_CAMPAIGN)),
            ("GetCampaignStats", cpb.GetCampaignStatsRequest(campaign_id=UNKNOWN_CAMPAIGN)),
            (
                "UpdateCampaign",
                cpb.UpdateCampaignRequest(
                    campaign=cpb.Campaign(campaign_id=UNKNOWN_CAMPAIGN),
                    update_mask={"paths": ["name"]},
                ),
            ),
        ]
    ),
    (
        f"{C}/ListDeliveries",
        cpb.ListDeliveriesRequest(user_id=UNKNOWN_USER),
        lambda r: not r.deliveries,
    ),
    (
        f"{C}/ListDeliveries",
        cpb.ListDeliveriesRequest(user_id="x", campaign_id=UNKNOWN_CAMPAIGN),
        lambda r: not r.deliveries,
    ),
    (
        f"{INBOX}/ListInboxMessages",
        inbox_pb2.ListInboxMessagesRequest(user_id=UNKNOWN_USER),
        lambda r: not r.messages and r.unread_count == 0,
    ),
    (
        f"{INBOX}/MarkRead",
        inbox_pb2.MarkReadRequest(user_id=UNKNOWN_USER, message_ids=["m-1"]),
        lambda r: r.marked == 0,
    ),
]


def _method(path: str) -> Any:
    (method,) = [m for m in METHODS if path_of(m) == f"/{path}"]
    return method


def _send(suite: Suite, path: str, request: Message | bytes, app: str = "shop") -> Outcome:
    data = request if isinstance(request, bytes) else request.SerializeToString()
    method = _method(path)
    outcome = suite.send(suite.tenants[app], method, data)
    judge(outcome, path)
    return outcome


def _reason(outcome: Outcome) -> str:
    assert outcome.status is not None
    for detail in outcome.status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    raise AssertionError("no ErrorInfo")


@pytest.mark.parametrize(
    ("path", "request_", "expect"),
    UNKNOWN,
    ids=[f"{p.rsplit('/')[-1]}-{i}" for i, (p, *_) in enumerate(UNKNOWN)],
)
def test_unknown_users_segments_and_campaigns_answer_as_documented(
    suite: Suite, path: str, request_: Message, expect: Expect
) -> None:
    outcome = _send(suite, path, request_)
    if isinstance(expect, str):
        assert (outcome.code, _reason(outcome)) == (grpc.StatusCode.NOT_FOUND, expect)
        resources = [
            d for d in outcome.status.details if d.Is(error_details_pb2.ResourceInfo.DESCRIPTOR)
        ]  # type: ignore[union-attr]
        assert len(resources) == 1
        return
    assert outcome.code == grpc.StatusCode.OK, outcome.message
    method = _method(path)
    answers = [
        message_factory.GetMessageClass(method.output_type).FromString(r) for r in outcome.replies
    ]
    assert expect(answers if method.server_streaming else answers[0])


def _pool_from_protos() -> descriptor_pool.DescriptorPool:
    """Descriptors compiled from protos/ with nothing but protoc: what a foreign client has."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{REPO / 'protos'}",
            "--include_imports",
            "--descriptor_set_out=/dev/stdout",
            "google/rpc/status.proto",
            "google/rpc/error_details.proto",
            "google/rpc/code.proto",
        ],
        check=True,
        capture_output=True,
        cwd=REPO,
    ).stdout
    pool = descriptor_pool.DescriptorPool()
    for proto in descriptor_pb2.FileDescriptorSet.FromString(out).file:
        pool.Add(proto)
    return pool


def test_error_details_decode_with_only_the_shipped_protos(suite: Suite) -> None:
    bad = ingest_pb2.TrackRequest(
        event=ingest_pb2.Event(
            event_id="e-1",
            user_id="u",
            name="Opened",
            properties={"note": types_pb2.Value(string_value="a\x00b")},
        )
    )
    outcome = _send(suite, "cohortflow.ingest.v1.IngestService/Track", bad)
    assert outcome.status is not None
    pool = _pool_from_protos()
    status_type = message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status"))
    status = status_type.FromString(outcome.status.SerializeToString())
    decoded = {}
    for detail in status.details:
        name = detail.type_url.rsplit("/", 1)[-1]
        kind = message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
        decoded[name] = kind.FromString(detail.value)
    violation = decoded["google.rpc.BadRequest"].field_violations[0]
    assert violation.field == 'event.properties["note"]'
    assert "U+0000" in violation.description
    assert decoded["google.rpc.ErrorInfo"].domain == "cohortflow.dev"
    code = pool.FindEnumTypeByName("google.rpc.Code")
    assert code.values_by_number[status.code].name == "INVALID_ARGUMENT"


def test_the_shipped_protos_are_googles_own() -> None:
    from google.rpc import status_pb2

    installed = Path(status_pb2.__file__).parent  # googleapis-common-protos ships the .proto
    for name in ("status.proto", "error_details.proto", "code.proto"):
        assert (REPO / "protos/google/rpc" / name).read_bytes() == (installed / name).read_bytes()


def _violations(outcome: Outcome) -> list[str]:
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, (outcome.code, outcome.message)
    return [field for field, _ in outcome.violations()]


def test_a_nul_in_a_batch_rejects_that_event_only_and_stores_nothing_of_it(suite: Suite) -> None:
    before = suite.stored_rows()
    good = ingest_pb2.Event(event_id="nul-batch-good", user_id="u", name="Opened")
    bad = ingest_pb2.Event(event_id="nul-batch-bad", user_id="u", name="Opened")
    bad.properties["tags"].list_value.values.add(string_value="x\x00")
    outcome = _send(
        suite,
        "cohortflow.ingest.v1.IngestService/TrackBatch",
        ingest_pb2.TrackBatchRequest(events=[good, bad]),
    )
    reply = ingest_pb2.TrackBatchResponse.FromString(outcome.replies[0])
    assert [r.status for r in reply.results] == [
        ingest_pb2.EventResult.STATUS_ACCEPTED,
        ingest_pb2.EventResult.STATUS_REJECTED,
    ]
    assert [v.field for v in reply.results[1].violations] == ['properties["tags"][0]']
    assert suite.stored_rows()[0] == before[0] + 1


def test_identify_refuses_a_nul_in_traits_and_contact(suite: Suite) -> None:
    before = suite.stored_rows()
    request = ingest_pb2.IdentifyRequest(
        event_id="nul-identify",
        user_id="u",
        traits={"plan": types_pb2.Value(string_value="pro\x00")},
        contact=ingest_pb2.Contact(email="a\x00@example.com"),
    )
    outcome = _send(suite, "cohortflow.ingest.v1.IngestService/Identify", request)
    assert _violations(outcome) == ['traits["plan"]', "contact.email"]
    assert suite.stored_rows() == before


@pytest.mark.parametrize(
    ("path", "request_", "field"),
    [
        (f"{P}/GetProfile", profiles_pb2.GetProfileRequest(user_id="a\x00"), "user_id"),
        (f"{S}/GetSegment", segments_pb2.GetSegmentRequest(segment_id="\x00"), "segment_id"),
        (
            f"{S}/WatchMembershipChanges",
            segments_pb2.WatchMembershipChangesRequest(segment_id="v\x00"),
            "segment_id",
        ),
        (f"{C}/GetCampaign", cpb.GetCampaignRequest(campaign_id="\x1b[2J"), "campaign_id"),
        (
            f"{INBOX}/MarkRead",
            inbox_pb2.MarkReadRequest(user_id="u", message_ids=["ok", "\x00"]),
            "message_ids[1]",
        ),
        (
            f"{S}/CreateSegment",
            segments_pb2.CreateSegmentRequest(
                segment_id="nul-name",
                segment=segments_pb2.Segment(display_name="Big\x00", condition=PRO),
            ),
            "segment.display_name",
        ),
        (
            f"{S}/CreateSegment",
            segments_pb2.CreateSegmentRequest(
                segment_id="nul-description",
                segment=segments_pb2.Segment(description="\x00", condition=PRO),
            ),
            "segment.description",
        ),
        (
            f"{S}/CreateSegment",
            segments_pb2.CreateSegmentRequest(
                segment_id="tab-name",
                segment=segments_pb2.Segment(display_name="a\tb", condition=PRO),
            ),
            "segment.display_name",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and "/" not in v else None,
)
def test_nul_and_control_characters_are_named_on_every_path(
    suite: Suite, path: str, request_: Message, field: str
) -> None:
    before = suite.stored_rows()
    assert field in _violations(_send(suite, path, request_))
    assert suite.stored_rows() == before


def test_a_segment_id_in_the_wrong_place_is_named_as_such(suite: Suite) -> None:
    outcome = _send(
        suite,
        f"{S}/CreateSegment",
        segments_pb2.CreateSegmentRequest(
            segment=segments_pb2.Segment(segment_id="misplaced", condition=PRO)
        ),
    )
    ((field, description),) = outcome.violations()
    assert field == "segment_id"
    assert "segment.segment_id ('misplaced') is not read on create" in description


def _token(cursor: str) -> str:
    return base64.urlsafe_b64encode(cursor.encode()).decode().rstrip("=")


# Forged for every RPC; `{"after": "x"}` is forged only where `after` is a number (where
# it is a segment or user id, it is a position among the caller's own data, not an error).
FORGED = [
    _token('{"offset":9223372036854775808}'),
    _token('{"after":9223372036854775808}'),
    _token('{"id":-1}'),
    _token('{"after":"a\\u0000b"}'),
    _token("[1]"),
    "%%%",
]
STRING_AFTER = {f"{S}/ListSegments", f"{S}/ListSegmentMembers"}
PAGED = [
    (
        f"{P}/ListUserTimeline",
        lambda t: profiles_pb2.ListUserTimelineRequest(user_id="u", page_token=t),
        "page_token",
    ),
    (
        f"{S}/ListSegments",
        lambda t: segments_pb2.ListSegmentsRequest(page_token=t),
        "page_token",
    ),
    (
        f"{S}/ListSegmentMembers",
        lambda t: segments_pb2.ListSegmentMembersRequest(segment_id="vip", page_token=t),
        "page_token",
    ),
    (
        f"{S}/ListMembershipHistory",
        lambda t: segments_pb2.ListMembershipHistoryRequest(user_id="u", page_token=t),
        "page_token",
    ),
    (
        f"{S}/WatchMembershipChanges",
        lambda t: segments_pb2.WatchMembershipChangesRequest(after_cursor=t),
        "after_cursor",
    ),
    (f"{C}/ListCampaigns", lambda t: cpb.ListCampaignsRequest(page_token=t), "page_token"),
    (
        f"{C}/ListDeliveries",
        lambda t: cpb.ListDeliveriesRequest(user_id="u", page_token=t),
        "page_token",
    ),
    (
        f"{INBOX}/ListInboxMessages",
        lambda t: inbox_pb2.ListInboxMessagesRequest(user_id="u", page_token=t),
        "page_token",
    ),
]


@pytest.mark.parametrize(
    ("path", "build", "field", "token"),
    [
        (path, build, field, token)
        for path, build, field in PAGED
        for token in [*FORGED, *([] if path in STRING_AFTER else [_token('{"after":"x"}')])]
    ],
    ids=lambda v: v.rsplit("/")[-1] if isinstance(v, str) and "/" in v else None,
)
def test_forged_page_tokens_are_invalid_arguments(
    suite: Suite, path: str, build: Callable[[str], Message], field: str, token: str
) -> None:
    assert field in _violations(_send(suite, path, build(token)))


@pytest.mark.parametrize("seconds", [-62_135_596_801, 253_402_300_800, 2**62])
def test_timestamps_out_of_range_are_invalid_arguments(suite: Suite, seconds: int) -> None:
    request = segments_pb2.ListSegmentMembersRequest(segment_id="vip")
    request.as_of_time.seconds = seconds
    assert _violations(_send(suite, f"{S}/ListSegmentMembers", request)) == ["as_of_time"]


@pytest.mark.parametrize("depth", [101, 150, 1000])
def test_nesting_beyond_protobufs_limit_is_a_malformed_request(suite: Suite, depth: int) -> None:
    request = nested(_method(f"{S}/CreateSegment").input_type, depth)
    assert request is not None
    outcome = _send(suite, f"{S}/CreateSegment", request)
    assert _violations(outcome) == ["request"]
    assert _reason(outcome) == "MALFORMED_REQUEST"


@pytest.mark.parametrize(
    "data", [b"\x00", b"\x0a\x02\xc3\x28", b"\x0a\x05abc"], ids=["corrupt", "utf8", "truncated"]
)
def test_bytes_that_are_no_request_are_malformed_requests(suite: Suite, data: bytes) -> None:
    outcome = _send(suite, f"{P}/GetProfile", data)
    assert _violations(outcome) == ["request"]
    assert "cohortflow.profiles.v1.GetProfileRequest" in outcome.message


def test_garbage_without_a_key_is_unauthenticated(suite: Suite) -> None:
    outcome = suite.send(None, _method(f"{C}/CreateCampaign"), b"\xff" * 64)
    assert outcome.code == grpc.StatusCode.UNAUTHENTICATED
