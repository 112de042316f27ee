"""The trigger freshness settings travel from the readable campaign form (demo and CLI files)
through the proto into the definition, and back out with the default filled in."""

from __future__ import annotations

import pytest

from services.campaign.domain.model import DEFAULT_MAX_TRIGGER_AGE_S, CampaignState
from services.campaign.grpc import convert
from services.common.campaign_form import FormError, campaign_from_form

FORM = {
    "name": "Win back",
    "trigger": {"lifecycle": {"from_states": ["dormant"], "to_states": ["active"]}},
    "channel": "in_app",
    "variants": [{"name": "A", "template": {"body": "We missed you"}}],
}


def test_fire_on_corrections_and_max_trigger_age_are_read_from_the_form() -> None:
    message = campaign_from_form({**FORM, "fire_on_corrections": True, "max_trigger_age": "2d"})
    definition, problems = convert.definition(message)
    assert problems == [] and definition is not None
    assert definition.fire_on_corrections is True
    assert definition.max_trigger_age_s == 2 * 86_400


def test_left_out_they_default_to_real_transitions_of_the_last_hour() -> None:
    definition, _ = convert.definition(campaign_from_form(FORM))
    assert definition is not None
    assert (definition.fire_on_corrections, definition.max_trigger_age_s) == (False, 3600.0)
    shown = convert.campaign_proto("c1", definition, CampaignState.ACTIVE, 1, 0, 0)
    assert shown.max_trigger_age.seconds == DEFAULT_MAX_TRIGGER_AGE_S
    assert not shown.fire_on_corrections


def test_a_bad_age_in_the_form_names_its_field() -> None:
    with pytest.raises(FormError, match=r"campaign\.max_trigger_age"):
        campaign_from_form({**FORM, "max_trigger_age": "soon"})
