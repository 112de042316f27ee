"""Apply segment definitions (`cohortflow segments apply`, the demo): create what is missing,
update what differs.

Running it again changes nothing: a segment is compared by name, description and condition
with its latest version.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc
from cohortflow.segments.v1 import segments_pb2 as spb
from cohortflow.segments.v1.segments_pb2_grpc import SegmentServiceStub

from services.cli.client import CliError, Connection, describe_rpc_error
from services.cli.segment_files import SegmentSpec
from services.common.segment_wire import condition_from_dict

T = TypeVar("T")
CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"


@dataclass(frozen=True)
class Applied:
    """What applying one segment or campaign did."""

    kind: str  # "segment" or "campaign"
    name: str  # segment id or campaign key
    outcome: str  # created, updated or unchanged
    version: int
    ident: str  # segment id or campaign id
    # Log position of the definition written (0 when unchanged or not a segment).
    position: int = 0


async def found_or_none(
    conn: Connection, method: Callable[..., Awaitable[T]], request: object
) -> T | None:
    """The answer of a Get call, or None for NOT_FOUND; other failures as CliError."""
    try:
        return await method(request, metadata=conn.target.metadata(), timeout=30)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
            return None
        raise CliError(describe_rpc_error(error, conn.service, conn.address)) from None


def segment_message(spec: SegmentSpec) -> spb.Segment:
    return spb.Segment(
        segment_id=spec.segment_id,
        display_name=spec.display_name,
        description=spec.description,
        condition=condition_from_dict(spec.condition),
    )


def _same_segment(existing: spb.Segment, desired: spb.Segment) -> bool:
    return (
        existing.display_name == desired.display_name
        and existing.description == desired.description
        and existing.condition == desired.condition
    )


async def apply_segments(
    conn: Connection, specs: tuple[SegmentSpec, ...], *, silent: bool = False
) -> list[Applied]:
    """Create or update each segment through SegmentService (referenced ones come first:
    the service checks references against the definitions in the log, so one just written
    can be referenced at once).

    An update names the version it replaces, so a concurrent edit fails instead of being
    overwritten; `silent` switches versions without publishing entries and exits.
    """
    stub = SegmentServiceStub(conn.channel)
    out: list[Applied] = []
    for spec in specs:
        desired = segment_message(spec)
        reply = await found_or_none(
            conn, stub.GetSegment, spb.GetSegmentRequest(segment_id=spec.segment_id)
        )
        if reply is None:
            created = await conn.unary(
                stub.CreateSegment,
                spb.CreateSegmentRequest(segment_id=spec.segment_id, segment=desired),
            )
            segment, outcome = created.segment, CREATED
        elif reply.segment.state == spb.Segment.STATE_ARCHIVED:
            msg = f"segment {spec.segment_id!r} is archived; give it another segment_id"
            raise CliError(msg)
        elif _same_segment(reply.segment, desired):
            segment, outcome = reply.segment, UNCHANGED
        else:
            updated = await conn.unary(
                stub.UpdateSegment,
                spb.UpdateSegmentRequest(
                    segment=desired, silent=silent, expected_version=reply.segment.version
                ),
            )
            segment, outcome = updated.segment, UPDATED
        position = 0 if outcome == UNCHANGED else segment.defined_position
        out.append(
            Applied("segment", spec.segment_id, outcome, segment.version, spec.segment_id, position)
        )
    return out
