"""Every RPC called by one app with another app's ids, page tokens, watch cursors and
log positions never returns any of the other app's data and never changes it."""

from __future__ import annotations

import pytest
from cohortflow.campaigns.v1 import campaigns_pb2, inbox_pb2
from cohortflow.ingest.v1 import history_pb2
from cohortflow.profiles.v1 import profiles_pb2
from cohortflow.segments.v1 import segments_pb2
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from hypothesis import given, settings

from tests.integration.hostile.calls import METHODS, Suite, Tenant, judge, path_of
from tests.integration.hostile.test_sweep import SCALE, SWEEP
from tests.support.hostile import Palette, messages

EXAMPLES = max(1, int(12 * SCALE))
# Fields that move with the log or the clock, not with the app's data.
VOLATILE = {"position", "build"}
PROFILES = "/cohortflow.profiles.v1.ProfileService/"
SEGMENTS = "/cohortflow.segments.v1.SegmentService/"
CAMPAIGNS = "/cohortflow.campaigns.v1.CampaignService/"
INBOX = "/cohortflow.campaigns.v1.InboxService/"
HISTORY = "/cohortflow.ingest.v1.HistoryImportService/"


def _stable(message: Message) -> Message:
    for field, value in message.ListFields():
        if field.name in VOLATILE:
            message.ClearField(field.name)
        elif field.message_type is not None and not field.message_type.GetOptions().map_entry:
            for item in value if field.is_repeated else [value]:
                _stable(item)
    return message


def view(suite: Suite, tenant: Tenant) -> list[bytes]:
    """All of an app's data, as its own key reads it."""
    calls: list[tuple[str, Message]] = [
        (f"{PROFILES}GetLifecycleSummary", profiles_pb2.GetLifecycleSummaryRequest()),
        (f"{SEGMENTS}ListSegments", segments_pb2.ListSegmentsRequest(show_archived=True)),
        (f"{CAMPAIGNS}ListCampaigns", campaigns_pb2.ListCampaignsRequest(show_archived=True)),
        (f"{CAMPAIGNS}GetMessagingPolicy", campaigns_pb2.GetMessagingPolicyRequest()),
        (f"{HISTORY}ListHistoryImports", history_pb2.ListHistoryImportsRequest()),
    ]
    for segment_id in tenant.segment_ids:
        calls.append(
            (f"{SEGMENTS}GetSegment", segments_pb2.GetSegmentRequest(segment_id=segment_id))
        )
        calls.append(
            (
                f"{SEGMENTS}ListSegmentMembers",
                segments_pb2.ListSegmentMembersRequest(segment_id=segment_id),
            )
        )
    for campaign_id in tenant.campaign_ids:
        calls.append(
            (
                f"{CAMPAIGNS}GetCampaignStats",
                campaigns_pb2.GetCampaignStatsRequest(campaign_id=campaign_id),
            )
        )
    for user in tenant.user_ids:
        calls += [
            (f"{PROFILES}GetProfile", profiles_pb2.GetProfileRequest(user_id=user)),
            (f"{PROFILES}ListUserTimeline", profiles_pb2.ListUserTimelineRequest(user_id=user)),
            (f"{SEGMENTS}ListUserSegments", segments_pb2.ListUserSegmentsRequest(user_id=user)),
            (
                f"{SEGMENTS}ListMembershipHistory",
                segments_pb2.ListMembershipHistoryRequest(user_id=user),
            ),
            (f"{CAMPAIGNS}ListDeliveries", campaigns_pb2.ListDeliveriesRequest(user_id=user)),
            (f"{INBOX}ListInboxMessages", inbox_pb2.ListInboxMessagesRequest(user_id=user)),
        ]
    return [_stable(suite.ok(tenant, path, request)).SerializeToString() for path, request in calls]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: path_of(m).removeprefix("/cohortflow."))
def test_another_apps_ids_tokens_and_positions_reach_none_of_its_data(
    suite: Suite, method: MethodDescriptor
) -> None:
    victim, caller = suite.tenants["shop"], suite.tenants["news"]
    palette = Palette(
        words=(*victim.words(), *victim.segment_ids),
        numbers=(*victim.positions, 1, 2),
        hostile=False,
    )
    before = view(suite, victim)

    @settings(SWEEP, max_examples=EXAMPLES)
    @given(request=messages(method.input_type, palette))
    def sweep(request: Message) -> None:
        outcome = suite.send(caller, method, request.SerializeToString())
        judge(outcome, path_of(method))
        received = outcome.text()
        assert victim.tag.encode() not in received, f"{path_of(method)} returned shop's data"
        for item in victim.private_bytes():
            # Only as the caller's own words: echoed (NOT_FOUND naming it) or stored by it.
            echoable = suite.sent.get(caller.app_id, set())
            assert item not in received or item in echoable, f"{path_of(method)}: {item!r}"

    sweep()
    assert view(suite, victim) == before, f"{path_of(method)} changed shop's data"
