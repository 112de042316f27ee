"""A durable JetStream consumer of segment membership changes.

    python deploy/examples/jetstream_subscriber.py --nats nats://127.0.0.1:4222 \
        --app demo --segment cart-abandoners --durable my-service

Run it twice with the same --durable: JetStream remembers what was acknowledged,
so a restart continues where it stopped. Each change carries a deterministic id
(also its Nats-Msg-Id) and a per-user sequence, so handling it twice is
detectable; acknowledge only after your effect is recorded.
"""

from __future__ import annotations

import argparse
import asyncio

import nats
from cohortflow.changes.v1 import changes_pb2
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy


async def consume(args: argparse.Namespace) -> int:
    nc = await nats.connect(args.nats)
    js = nc.jetstream()
    subject = f"{args.prefix}.{args.app}.segment.{args.segment}"
    sub = await js.pull_subscribe(
        subject,
        durable=args.durable,
        stream=args.stream,
        config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL, ack_wait=30
        ),
    )
    handled = 0
    while args.max is None or handled < args.max:
        wanted = 100 if args.max is None else min(100, args.max - handled)
        try:
            messages = await sub.fetch(wanted, timeout=args.idle)
        except (TimeoutError, nats.errors.TimeoutError):
            if args.max is not None:
                break
            continue
        for msg in messages:
            change = changes_pb2.MembershipChanged()
            change.ParseFromString(msg.data)
            direction = changes_pb2.MembershipChanged.Direction.Name(change.direction)
            print(
                f"{change.header.user_id} {direction.removeprefix('DIRECTION_').lower()}"
                f" {change.segment_id} v{change.segment_version}"
                f" cause={changes_pb2.Cause.Kind.Name(change.header.cause.kind)}"
                f" id={change.header.change_id}",
                flush=True,
            )
            await msg.ack()  # after the effect: here, the line printed
            handled += 1
    await nc.drain()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--stream", default="COHORTFLOW_CHANGES")
    parser.add_argument("--prefix", default="cohortflow.changes")
    parser.add_argument("--app", required=True)
    parser.add_argument("--segment", default="*", help="a segment id, or * for all")
    parser.add_argument("--durable", required=True)
    parser.add_argument("--max", type=int, default=None, help="stop after this many")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds to wait for more")
    return asyncio.run(consume(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
