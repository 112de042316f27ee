"""`cohortflow demo --once` against ingest, projector and campaign as processes: the example
segments and campaigns are created, a small population moves through lifecycle states into
segments, and running it again changes nothing."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import grpc
import pytest
from cohortflow.campaigns.v1 import campaigns_pb2, campaigns_pb2_grpc
from cohortflow.segments.v1 import segments_pb2, segments_pb2_grpc

from services.cli.demo.files import DEMO_FILES, load
from tests.support.cli import Suite
from tests.support.infra import NatsForTests
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.e2e
KEY = (("authorization", "Bearer key-shop"),)
# The simulated history is 30 days old; fold all of it into lifecycle states.
POLICIES = json.dumps({"*": {"lifecycle": {"late_limit_days": 400}}})
LIFECYCLE = re.compile(r"^lifecycle: (?P<counts>.*) \(total (?P<total>[\d,]+)\)$", re.M)
SEGMENT = re.compile(r"^segment (?P<id>[a-z0-9-]+): active v\d+, (?P<size>[\d,]+) members", re.M)


def demo(pipeline: Pipeline, workdir: Path) -> subprocess.CompletedProcess:
    suite = Suite(
        pipeline.database_url, pipeline.ingest_address, pipeline.projector_address, workdir
    )
    args = ("demo", "--once", "--users", "60", "--days", "30", "--speed", "0", "--seed", "4")
    return suite.cli(
        *args, COHORTFLOW_CAMPAIGN=pipeline.campaign_address, COHORTFLOW_API_KEY="key-shop"
    )


async def test_the_demo_applies_its_files_simulates_and_reruns_as_a_no_op(
    database_url: str, nats_server: NatsForTests, tmp_path: Path
) -> None:
    files = load(DEMO_FILES)
    pipeline = Pipeline(
        database_url, nats_server.url, tmp_path, projector={"PROJECTOR_POLICIES": POLICIES}
    )
    try:
        pipeline.start()
        first = demo(pipeline, tmp_path)
        assert first.returncode == 0, first.stdout + first.stderr + pipeline.output()
        out = first.stdout
        for spec in files.segments:
            assert f"segment {spec.segment_id}: created (version 1)" in out
        for campaign in files.campaigns:
            assert f"campaign {campaign.key}: created (version 1)" in out
        assert "cohortflow demo: settled" in out

        # Users moved through lifecycle states, and segments have members.
        lifecycle = LIFECYCLE.search(out)
        assert lifecycle, out
        assert int(lifecycle["total"].replace(",", "")) == 60
        counts = dict(part.rsplit(" ", 1) for part in lifecycle["counts"].split(", "))
        assert sum(int(n.replace(",", "")) > 0 for n in counts.values()) >= 3, counts
        sizes = {m["id"]: int(m["size"].replace(",", "")) for m in SEGMENT.finditer(out)}
        assert set(sizes) == {s.segment_id for s in files.segments}
        assert max(sizes.values()) > 0, sizes

        # They exist in the services, as the files define them.
        async with grpc.aio.insecure_channel(pipeline.projector_address) as channel:
            listed = await segments_pb2_grpc.SegmentServiceStub(channel).ListSegments(
                segments_pb2.ListSegmentsRequest(page_size=100), metadata=KEY
            )
        assert {s.segment_id for s in listed.segments} == set(sizes)
        async with grpc.aio.insecure_channel(pipeline.campaign_address) as channel:
            campaigns = await campaigns_pb2_grpc.CampaignServiceStub(channel).ListCampaigns(
                campaigns_pb2.ListCampaignsRequest(), metadata=KEY
            )
        assert sorted(c.name for c in campaigns.campaigns) == sorted(
            c.campaign.name for c in files.campaigns
        )
        assert all(c.version == 1 for c in campaigns.campaigns)

        # The same run again: nothing to create or update, every event a duplicate.
        again = demo(pipeline, tmp_path)
        assert again.returncode == 0, again.stdout + again.stderr
        assert again.stdout.count(": unchanged (version 1)") == len(files.segments) + len(
            files.campaigns
        )
        assert re.search(r"accepted 0, duplicate [\d,]+, rejected 0", again.stdout)
        second = LIFECYCLE.search(again.stdout)
        assert second and second["total"] == lifecycle["total"]
    finally:
        pipeline.stop()
        await pipeline.close()
