"""What SegmentService checks in a request before looking at its condition.

Ids, names and descriptions only (the condition is the definition language's,
`services.common.segments.definition`). Each problem names the field as the
client wrote it: `segment_id` of a CreateSegmentRequest, `segment.segment_id` of an
update or preview.
"""

from __future__ import annotations

from cohortflow.segments.v1 import segments_pb2

from services.common.grpc.errors import FieldViolation
from services.common.segments.definition import SEGMENT_ID
from services.common.text import name_problem, text_problem

MAX_NAME = 200
MAX_DESCRIPTION = 2000
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


def text_field_problems(segment: segments_pb2.Segment) -> list[FieldViolation]:
    """display_name: no control characters at all; description: free text."""
    problems: list[FieldViolation] = []
    if len(segment.display_name) > MAX_NAME:
        problems.append(FieldViolation("segment.display_name", f"at most {MAX_NAME} characters"))
    elif problem := name_problem(segment.display_name):
        problems.append(FieldViolation("segment.display_name", problem))
    if len(segment.description) > MAX_DESCRIPTION:
        problems.append(
            FieldViolation("segment.description", f"at most {MAX_DESCRIPTION} characters")
        )
    elif problem := text_problem(segment.description):
        problems.append(FieldViolation("segment.description", problem))
    return problems
