"""Read the change stream in tests: unique stream names, decode every message."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import nats
from cohortflow.changes.v1 import changes_pb2
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.common.jetstream import ChangeStreamSettings

TYPES = {
    "cohortflow.changes.v1.LifecycleChanged": changes_pb2.LifecycleChanged,
    "cohortflow.changes.v1.RfmGroupChanged": changes_pb2.RfmGroupChanged,
    "cohortflow.changes.v1.MembershipChanged": changes_pb2.MembershipChanged,
}


def unique_streams() -> ChangeStreamSettings:
    tag = uuid.uuid4().hex[:10]
    return ChangeStreamSettings(
        CHANGES_STREAM=f"TEST_CHANGES_{tag}", CHANGES_SUBJECT_PREFIX=f"test_{tag}.changes"
    )


@dataclass
class Received:
    subject: str
    msg_id: str
    message: object

    @property
    def header(self) -> changes_pb2.ChangeHeader:
        return self.message.header  # type: ignore[attr-defined]


async def read_all(
    nats_url: str,
    streams: ChangeStreamSettings,
    *,
    expect: int | None = None,
    within: float = 20,
    subject: str = ">",
) -> list[Received]:
    """Every message in the stream under `subject` (relative to the prefix, e.g.
    "*.segment.>"), waiting until `expect` are there, if given."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        deadline = asyncio.get_running_loop().time() + within
        while True:
            try:
                await js.stream_info(streams.stream)
                break
            except nats.js.errors.NotFoundError:
                if asyncio.get_running_loop().time() > deadline:
                    return []
                await asyncio.sleep(0.1)
        sub = await js.pull_subscribe(
            f"{streams.subject_prefix}.{subject}",
            durable=None,
            stream=streams.stream,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        out: list[Received] = []
        while True:
            try:
                batch = await sub.fetch(500, timeout=0.5)
            except (TimeoutError, nats.errors.TimeoutError):
                batch = []
            for msg in batch:
                cls = TYPES[msg.headers["Cohortflow-Type"]]
                message = cls()
                message.ParseFromString(msg.data)
                out.append(Received(msg.subject, msg.headers["Nats-Msg-Id"], message))
                await msg.ack()
            if batch:
                continue
            if expect is None or len(out) >= expect:
                break
            if asyncio.get_running_loop().time() > deadline:
                break
        await sub.unsubscribe()
        return out
    finally:
        await nc.close()


async def delete_stream(nats_url: str, streams: ChangeStreamSettings) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().delete_stream(streams.stream)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()
