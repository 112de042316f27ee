"""The documented subscriber examples work: durable JetStream consumer and gRPC watch."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

from cohortflow.segments.v1 import segments_pb2

from tests.support.ingest import auth
from tests.support.logevents import MINUTE, T0, tick, track
from tests.support.processes import REPO
from tests.support.projector import InProcessProjector
from tests.support.segment_calls import append, segment, state_of, until


def run(script: str, *args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "examples" / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.splitlines()


async def test_examples_consume_and_resume(projector: InProcessProjector, tmp_path: Path) -> None:
    app, log, stub = projector.app, projector.log, projector.segments
    streams, nats_url = projector.streams, projector.nats_url
    append(log, tick(T0))
    created = await stub.CreateSegment(
        segments_pb2.CreateSegmentRequest(
            segment_id="fresh", segment=segment({"lifecycle": ["new"]})
        ),
        metadata=auth("key-app"),
    )

    async def active() -> Any:
        got = await state_of(stub, "fresh", created.segment.defined_position)
        return got.state == segments_pb2.Segment.STATE_ACTIVE

    await until(active)
    position = append(log, *(track(f"w{i}", T0 + i * MINUTE) for i in range(4)))
    await state_of(stub, "fresh", position)

    jetstream = [
        "jetstream_subscriber.py",
        "--nats",
        nats_url,
        "--stream",
        streams.stream,
        "--prefix",
        streams.subject_prefix,
        "--app",
        "app",
        "--segment",
        "fresh",
        "--durable",
        "example",
        "--idle",
        "3",
    ]
    first = await asyncio.to_thread(run, *jetstream, "--max", "3")
    assert [line.split()[0] for line in first] == ["w0", "w1", "w2"]
    assert all(" entered fresh v1 " in line for line in first)
    rest = await asyncio.to_thread(run, *jetstream, "--max", "10")
    assert [line.split()[0] for line in rest] == ["w3"]  # the durable consumer resumed

    cursor = tmp_path / "cursor"
    watch = [
        "watch_subscriber.py",
        "--projector",
        f"127.0.0.1:{app.port}",
        "--key",
        "key-app",
        "--segment",
        "fresh",
        "--state",
        str(cursor),
    ]
    seen = await asyncio.to_thread(run, *watch, "--max", "2")
    assert [line.split()[0] for line in seen] == ["w0", "w1"]
    more = await asyncio.to_thread(run, *watch, "--max", "2")
    assert [line.split()[0] for line in more] == ["w2", "w3"]
