"""The three services as processes with two apps, each seeded through the public APIs
with users, events, segments, campaigns, inbox messages and a policy; each app's ids,
page tokens, cursors and positions collected for the tenant-isolation sweep."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
from cohortflow.campaigns.v1 import campaigns_pb2 as cpb
from cohortflow.campaigns.v1 import inbox_pb2
from cohortflow.ingest.v1 import history_pb2, ingest_pb2
from cohortflow.profiles.v1 import profiles_pb2
from cohortflow.segments.v1 import segments_pb2
from cohortflow.types.v1 import types_pb2

from services.migrate import migrate
from services.projector.grpc.segment_convert import condition_from_dict
from tests.integration.hostile.calls import Suite, Tenant
from tests.support.campaign import campaign
from tests.support.infra import NatsForTests, PostgresForTests
from tests.support.ingest import event
from tests.support.pipeline import Pipeline

APPS = {"shop": "key-shop", "news": "key-news"}
SETTLE_S = 60.0


def _until(what: str, check: object, within: float = SETTLE_S) -> object:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = check()  # type: ignore[operator]
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not reached within {within}s: {what}")


def _define(suite: Suite, tenant: Tenant) -> None:
    """Segments and campaigns first, so users entering later trigger live sends."""
    tag = tenant.tag
    for segment_id, condition in (
        ("vip", {"trait": {"key": "plan", "op": "=", "value": "pro"}}),
        (f"{tenant.app_id}-only", {"events": {"name": "App Opened", "op": ">=", "value": 1}}),
    ):
        reply = suite.ok(
            tenant,
            "/cohortflow.segments.v1.SegmentService/CreateSegment",
            segments_pb2.CreateSegmentRequest(
                segment_id=segment_id,
                segment=segments_pb2.Segment(
                    display_name=f"{tag}-NAME-{segment_id}",
                    description=f"{tag}-DESCRIPTION",
                    condition=condition_from_dict(condition),
                ),
            ),
        )
        tenant.segment_ids.append(segment_id)
        tenant.positions.append(reply.segment.defined_position)
    for name in ("first", "second"):
        reply = suite.ok(
            tenant,
            "/cohortflow.campaigns.v1.CampaignService/CreateCampaign",
            cpb.CreateCampaignRequest(
                campaign=campaign(
                    name=f"{tag}-CAMPAIGN-{name}",
                    segment_id="vip",
                    title=f"{tag}-TITLE",
                    body=f"{tag}-BODY {{{{ user.secret }}}}",
                )
            ),
        )
        tenant.campaign_ids.append(reply.campaign.campaign_id)
    suite.ok(
        tenant,
        "/cohortflow.campaigns.v1.CampaignService/UpdateMessagingPolicy",
        cpb.UpdateMessagingPolicyRequest(policy=cpb.MessagingPolicy(holdout_salt=f"{tag}-SALT")),
    )


def _wait_active(suite: Suite, tenant: Tenant) -> None:
    for segment_id in tenant.segment_ids:

        def active(segment_id: str = segment_id) -> bool:
            reply = suite.ok(
                tenant,
                "/cohortflow.segments.v1.SegmentService/GetSegment",
                segments_pb2.GetSegmentRequest(segment_id=segment_id),
            )
            return reply.segment.state == segments_pb2.Segment.STATE_ACTIVE

        _until(f"{tenant.app_id} segment {segment_id} active", active)


def _people(suite: Suite, tenant: Tenant) -> None:
    for i in range(3):
        user = f"{tenant.app_id}-u{i}-{uuid.uuid4().hex[:6]}"
        tenant.user_ids.append(user)
        reply = suite.ok(
            tenant,
            "/cohortflow.ingest.v1.IngestService/Identify",
            ingest_pb2.IdentifyRequest(
                event_id=f"idn-{user}",
                user_id=user,
                traits={
                    "plan": types_pb2.Value(string_value="pro"),
                    "secret": types_pb2.Value(string_value=f"{tenant.tag}-SECRET-{i}"),
                },
                contact=ingest_pb2.Contact(email=f"{user}@{tenant.tag.lower()}.example.com"),
            ),
        )
        tenant.positions.append(reply.result.position)
        batch = suite.ok(
            tenant,
            "/cohortflow.ingest.v1.IngestService/TrackBatch",
            ingest_pb2.TrackBatchRequest(
                events=[
                    event("App Opened", user_id=user, properties={"note": f"{tenant.tag}-PROP"})
                    for _ in range(2)
                ]
            ),
        )
        tenant.positions.extend(r.position for r in batch.results)


HISTORY = "/cohortflow.ingest.v1.HistoryImportService/"


def _history(suite: Suite, tenant: Tenant) -> None:
    """A history import of this app, appended to the end: its job id and marker positions."""
    job = suite.ok(
        tenant,
        f"{HISTORY}StartHistoryImport",
        history_pb2.StartHistoryImportRequest(requested_by=f"{tenant.tag}-REQUESTER"),
    ).job
    past = event(
        "App Opened", user_id=tenant.user_ids[0], properties={"note": f"{tenant.tag}-PAST"}
    )
    past.event_time.FromSeconds(int(time.time()) - 30 * 86_400)
    suite.ok(
        tenant,
        f"{HISTORY}UploadHistory",
        history_pb2.UploadHistoryRequest(job_id=job.job_id, events=[past]),
    )
    suite.ok(
        tenant,
        f"{HISTORY}FinishHistoryImport",
        history_pb2.FinishHistoryImportRequest(job_id=job.job_id),
    )

    def done() -> object:
        found = suite.ok(
            tenant,
            f"{HISTORY}GetHistoryImport",
            history_pb2.GetHistoryImportRequest(job_id=job.job_id),
        ).job
        return found if found.state == history_pb2.HistoryImport.STATE_DONE else None

    finished = _until(f"{tenant.app_id} history import done", done)
    tenant.other_ids.append(job.job_id)
    tenant.positions.extend(finished.finished_positions)  # type: ignore[attr-defined]


def _collect(suite: Suite, tenant: Tenant) -> None:
    """Inbox messages, deliveries, page tokens and cursors of this app."""
    first = tenant.user_ids[0]

    def inbox() -> object:
        reply = suite.ok(
            tenant,
            "/cohortflow.campaigns.v1.InboxService/ListInboxMessages",
            inbox_pb2.ListInboxMessagesRequest(user_id=first, page_size=1),
        )
        return reply if reply.next_page_token else None

    reply = _until(f"{tenant.app_id} inbox of {first}", inbox)
    tenant.tokens.append(reply.next_page_token)  # type: ignore[attr-defined]
    for user in tenant.user_ids:
        messages = suite.ok(
            tenant,
            "/cohortflow.campaigns.v1.InboxService/ListInboxMessages",
            inbox_pb2.ListInboxMessagesRequest(user_id=user),
        ).messages
        tenant.other_ids.extend(m.message_id for m in messages)
        deliveries = suite.ok(
            tenant,
            "/cohortflow.campaigns.v1.CampaignService/ListDeliveries",
            cpb.ListDeliveriesRequest(user_id=user, page_size=1),
        )
        tenant.tokens.append(deliveries.next_page_token)
        tenant.other_ids.extend(d.send_id for d in deliveries.deliveries)
        tenant.other_ids.extend(d.change_id for d in deliveries.deliveries)
    pages = [
        (
            "/cohortflow.segments.v1.SegmentService/ListSegmentMembers",
            segments_pb2.ListSegmentMembersRequest(segment_id="vip", page_size=1),
        ),
        (
            "/cohortflow.segments.v1.SegmentService/ListSegments",
            segments_pb2.ListSegmentsRequest(page_size=1),
        ),
        (
            "/cohortflow.profiles.v1.ProfileService/ListUserTimeline",
            profiles_pb2.ListUserTimelineRequest(user_id=first, page_size=1),
        ),
        (
            "/cohortflow.segments.v1.SegmentService/ListMembershipHistory",
            segments_pb2.ListMembershipHistoryRequest(user_id=first, page_size=1),
        ),
        (
            "/cohortflow.campaigns.v1.CampaignService/ListCampaigns",
            cpb.ListCampaignsRequest(page_size=1),
        ),
    ]
    for method, request in pages:
        tenant.tokens.append(suite.ok(tenant, method, request).next_page_token)
    watched = suite.first_of_stream(
        tenant,
        "/cohortflow.segments.v1.SegmentService/WatchMembershipChanges",
        segments_pb2.WatchMembershipChangesRequest(segment_id="vip"),
    )
    tenant.tokens.append(watched.cursor)
    tenant.tokens = [t for t in tenant.tokens if t]


@pytest.fixture(scope="package")
def suite(
    postgres: PostgresForTests, nats_server: NatsForTests, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Suite]:
    database_url = postgres.create_database()
    migrate(database_url)
    keys = ",".join(f"{app}:{key}" for app, key in APPS.items())
    pipeline = Pipeline(
        database_url,
        nats_server.url,
        tmp_path_factory.mktemp("hostile"),
        common={"COHORTFLOW_API_KEYS": keys, "LOG_LEVEL": "INFO"},
        # Small pools: the PostgreSQL of the machine is shared with other test runs.
        ingest={"INGEST_DB_POOL_SIZE": "2"},
        projector={
            "PROJECTOR_TICK_INTERVAL_S": "0",
            "PROJECTOR_READ_WAIT_S": "0.2",
            "PROJECTOR_DB_POOL_SIZE": "4",
        },
        campaign={"CAMPAIGN_DB_POOL_SIZE": "3"},
    )
    try:
        pipeline.start()
        suite = Suite.of(pipeline, database_url, APPS)
        for tenant in suite.tenants.values():
            _define(suite, tenant)
        for tenant in suite.tenants.values():
            _wait_active(suite, tenant)
            _people(suite, tenant)
        for tenant in suite.tenants.values():
            _collect(suite, tenant)
            _history(suite, tenant)
        yield suite
        suite.close()
        assert suite.pipeline.stop() == {
            "services.campaign": 0,
            "services.projector": 0,
            "services.ingest": 0,
        }, pipeline.output()
    finally:
        asyncio.run(pipeline.close())
        postgres.drop_database(database_url)
