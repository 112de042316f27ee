"""What SegmentService checks in a request's shape before its draft goes to the commands.

Ids only: where a request names its segment depends on the RPC, so each problem names
the field as the client wrote it (`segment_id` of a CreateSegmentRequest,
`segment.segment_id` of an update or preview). Names, descriptions and the condition are
the draft's, checked by the command layer (`service_layer.segment_checks`).
"""

from __future__ import annotations

from cohortflow.segments.v1 import segments_pb2

from services.common.domain_errors import FieldViolation
from services.common.segments.definition import SEGMENT_ID

# Where an update or a preview names its segment.
INNER_ID = "segment.segment_id"
ID_RULE = "lowercase letters, digits and -, 1 to 63 characters, starting and ending alphanumeric"


def segment_id_problems(segment_id: str, field: str) -> list[FieldViolation]:
    if not segment_id:
        return [FieldViolation(field, f"is required ({ID_RULE})")]
    if not SEGMENT_ID.fullmatch(segment_id):
        return [FieldViolation(field, f"must be {ID_RULE}")]
    return []


def create_id_problems(request: segments_pb2.CreateSegmentRequest) -> list[FieldViolation]:
    """The new segment's id goes in `CreateSegmentRequest.segment_id` (AIP-133);
    `segment.segment_id` may repeat it but never replaces it."""
    inner = request.segment.segment_id
    if not request.segment_id and inner:
        return [
            FieldViolation(
                "segment_id",
                f"is required: put the new segment's id here; segment.segment_id ({inner!r})"
                " is not read on create",
            )
        ]
    problems = segment_id_problems(request.segment_id, "segment_id")
    if inner and request.segment_id and inner != request.segment_id:
        problems.append(
            FieldViolation(
                "segment.segment_id", "differs from segment_id; leave it empty or repeat it"
            )
        )
    return problems
