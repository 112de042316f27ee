"""Follow segment membership changes over gRPC (no NATS needed), resuming after restarts.

    python deploy/examples/watch_subscriber.py --projector 127.0.0.1:50052 \
        --key "$(cat var/dev-api-key)" --segment cart-abandoners --state watch.cursor

The stream never ends by itself; every change comes with a cursor. Keeping the
last cursor (here in a file) and passing it back resumes exactly after it.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import grpc
from cohortflow.changes.v1 import changes_pb2
from cohortflow.segments.v1 import segments_pb2, segments_pb2_grpc


async def watch(args: argparse.Namespace) -> int:
    state = Path(args.state) if args.state else None
    cursor = state.read_text().strip() if state and state.exists() else ""
    seen = 0
    async with grpc.aio.insecure_channel(args.projector) as channel:
        stub = segments_pb2_grpc.SegmentServiceStub(channel)
        call = stub.WatchMembershipChanges(
            segments_pb2.WatchMembershipChangesRequest(
                segment_id=args.segment, after_cursor=cursor, after_position=args.after_position
            ),
            metadata=[("authorization", f"Bearer {args.key}")],
        )
        async for item in call:
            change = item.change
            direction = changes_pb2.MembershipChanged.Direction.Name(change.direction)
            print(
                f"{change.header.user_id} {direction.removeprefix('DIRECTION_').lower()}"
                f" {change.segment_id} v{change.segment_version} at position"
                f" {change.header.position}",
                flush=True,
            )
            if state:
                state.write_text(item.cursor)  # after handling it: resume after this one
            seen += 1
            if args.max is not None and seen >= args.max:
                call.cancel()
                break
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--projector", default="127.0.0.1:50052")
    parser.add_argument("--key", required=True)
    parser.add_argument("--segment", default="", help="empty: every segment of the app")
    parser.add_argument("--state", default="", help="file keeping the last cursor")
    parser.add_argument("--after-position", type=int, default=0)
    parser.add_argument("--max", type=int, default=None, help="stop after this many")
    return asyncio.run(watch(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
