"""Campaign's refusals go through the one status table, like the segment commands'."""

from __future__ import annotations

import grpc
import pytest

from services.campaign.adapters.store import CampaignNotFound
from services.campaign.domain.campaign import CampaignError, VersionConflict
from services.common.grpc.errors import status_of
from tests.support.statuses import status_reason


@pytest.mark.parametrize(
    ("error", "code", "reason", "message"),
    [
        (
            CampaignNotFound("c-1"),
            grpc.StatusCode.NOT_FOUND,
            "CAMPAIGN_NOT_FOUND",
            "no campaign 'c-1' in this app",
        ),
        (
            VersionConflict("campaign is at version 3, not 2"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "VERSION_CONFLICT",
            "campaign is at version 3, not 2",
        ),
        (
            CampaignError("an archived campaign cannot be resumed"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "CAMPAIGN_STATE",
            "an archived campaign cannot be resumed",
        ),
    ],
)
def test_each_refusal_has_its_status(
    error: Exception, code: grpc.StatusCode, reason: str, message: str
) -> None:
    status = status_of(error, "e1")
    assert status.code == code
    assert status.details == message
    assert status_reason(status) == reason
