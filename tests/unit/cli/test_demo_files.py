"""The demo's files (deploy/demo/) read, check and convert as the services will take them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cohortflow.campaigns.v1 import campaigns_pb2 as pb
from cohortflow.types.v1 import types_pb2

from services.campaign.domain.model import CampaignState
from services.campaign.domain.validation import check_definition
from services.campaign.grpc.convert import campaign_proto, definition
from services.cli.demo.apply import _same_campaign
from services.cli.demo.files import (
    DEMO_FILES,
    DemoFileError,
    load,
    load_campaigns,
    load_segments,
)
from services.cli.segment_apply import segment_message
from services.common.campaign_form import FormError, campaign_from_form, campaign_to_form
from services.common.segment_wire import condition_from_dict, condition_to_dict
from services.common.segments.definition import parse

DEMO = load(DEMO_FILES)


def test_every_example_segment_parses_and_references_come_first() -> None:
    ids = [s.segment_id for s in DEMO.segments]
    assert len(ids) >= 5 and len(set(ids)) == len(ids)
    for position, spec in enumerate(DEMO.segments):
        assert parse(spec.condition).references == spec.references
        assert spec.references <= set(ids[:position]), spec.segment_id
    assert any(spec.references for spec in DEMO.segments)  # one combines others


def test_a_segment_compares_equal_after_the_services_round_trip() -> None:
    # The service stores condition_to_dict(request) and answers condition_from_dict(stored):
    # equal protos are what makes re-applying an unchanged file a no-op.
    for spec in DEMO.segments:
        sent = segment_message(spec).condition
        assert condition_from_dict(condition_to_dict(sent)) == sent, spec.segment_id


def test_every_example_campaign_converts_and_passes_the_services_checks() -> None:
    segment_ids = {s.segment_id for s in DEMO.segments}
    assert len(DEMO.campaigns) >= 3
    for spec in DEMO.campaigns:
        found, problems = definition(spec.campaign)
        assert found is not None and problems == [], spec.key
        assert check_definition(found, time.time_ns() // 1000) == [], spec.key
        # in-app only: the demo sends nothing to any outside host
        assert spec.campaign.channel == types_pb2.CHANNEL_IN_APP
        trigger = spec.campaign.trigger
        if trigger.HasField("segment"):
            assert trigger.segment.segment_id in segment_ids


def test_an_unchanged_campaign_is_recognised_after_the_service_filled_its_defaults() -> None:
    for spec in DEMO.campaigns:
        found, _ = definition(spec.campaign)
        assert found is not None
        stored = campaign_proto("c-1", found, CampaignState.ACTIVE, 3, 1, 2)
        assert _same_campaign(stored, spec.campaign), spec.key
        changed = pb.Campaign()
        changed.CopyFrom(spec.campaign)
        changed.variants[0].template.body += "!"
        assert not _same_campaign(stored, changed), spec.key


def test_the_readable_campaign_form_takes_short_enum_names_durations_and_values() -> None:
    campaign = campaign_from_form(
        {
            "name": "n",
            "trigger": {"lifecycle": {"from_states": ["active"], "to_states": ["dormant"]}},
            "channel": "in_app",
            "variants": [{"name": "A", "template": {"body": "b", "missing_variables": "suppress"}}],
            "delay": "90m",
            "reentry": {"mode": "after_cooldown", "cooldown": "1w"},
            "quiet_hours": {"start": "22:00", "end": "08:00", "behavior": "drop"},
            "conversion_goal": {"event_name": "Paid", "property_equals": {"plan": "pro", "n": 2}},
            "start_time": "2030-01-01T00:00:00+01:00",
        }
    )
    assert campaign.trigger.lifecycle.to_states == [types_pb2.LIFECYCLE_STATE_DORMANT]
    assert campaign.channel == types_pb2.CHANNEL_IN_APP
    assert campaign.delay.seconds == 5400
    assert campaign.reentry.mode == pb.ReentryPolicy.MODE_AFTER_COOLDOWN
    assert campaign.reentry.cooldown.seconds == 7 * 86400
    assert campaign.quiet_hours.behavior == pb.QuietHours.BEHAVIOR_DROP
    assert campaign.variants[0].template.missing_variables == (
        pb.Template.MISSING_VARIABLES_SUPPRESS
    )
    assert campaign.conversion_goal.property_equals["n"].number_value == 2
    assert campaign.start_time.ToJsonString() == "2029-12-31T23:00:00Z"


def test_a_stored_campaign_reads_back_as_the_form_it_came_from() -> None:
    # What the console shows on a campaign's page: the service's definition (defaults
    # filled, output-only fields set) in the readable form, which creates the same one.
    for spec in DEMO.campaigns:
        found, _ = definition(spec.campaign)
        assert found is not None
        stored = campaign_proto("c-1", found, CampaignState.ACTIVE, 3, 1, 2)
        form = campaign_to_form(stored)
        assert "campaign_id" not in form and "state" not in form
        again = campaign_from_form(form)
        assert _same_campaign(stored, again), spec.key
    odd = pb.Campaign(name="n")
    odd.delay.FromMicroseconds(1_500_000)
    odd.reentry.cooldown.FromSeconds(90 * 60)
    odd.conversion_goal.property_equals["ok"].bool_value = True
    form = campaign_to_form(odd)
    assert (form["delay"], form["reentry"]["cooldown"]) == ("1.5s", "90m")
    assert form["conversion_goal"]["property_equals"] == {"ok": True}
    assert campaign_from_form(form) == odd


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"nmae": "x"}, "campaign.nmae: unknown field"),
        ({"channel": "pigeon"}, "campaign.channel: 'pigeon' is not one of in_app, email"),
        ({"delay": "3x"}, "campaign.delay: '3x' is not a duration"),
        ({"campaign_id": "c"}, "campaign.campaign_id: set by the service"),
        ({"variants": {"name": "A"}}, "campaign.variants: expected a list"),
        (
            {"conversion_goal": {"property_equals": {"k": [1]}}},
            "campaign.conversion_goal.property_equals.k: expected a string, number",
        ),
    ],
)
def test_a_bad_campaign_field_is_named_by_its_path(form: dict, message: str) -> None:
    with pytest.raises(FormError, match="^" + message.replace(".", r"\.").replace("(", r"\(")):
        campaign_from_form(form)


def test_bad_segment_files_are_refused_naming_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "segments.yaml"
    cases = {
        "segments:\n  - {segment_id: a, condition: {events: {name: X, window: 3x}}}\n": (
            "segments[0].condition.events.window"
        ),
        "segments:\n  - {segment_id: a, condition: {lifecycle: [new]}}\n"
        "  - {segment_id: a, condition: {lifecycle: [new]}}\n": "'a' appears twice",
        "segments:\n  - {segment_id: a, condition: {segment: b}}\n"
        "  - {segment_id: b, condition: {segment: a}}\n": "references loop",
        "segments:\n  - {segment_id: Big, condition: {lifecycle: [new]}}\n": "segment_id",
        "segments: {a: 1}\n": "expected a list under `segments:`",
        "segments: [\n": "not valid YAML",
    }
    for text, expected in cases.items():
        path.write_text(text)
        with pytest.raises(DemoFileError, match=str(path)) as caught:
            load_segments(path)
        assert expected in str(caught.value)


def test_segments_are_applied_referenced_ones_first(tmp_path: Path) -> None:
    path = tmp_path / "segments.yaml"
    path.write_text(
        "segments:\n"
        "  - {segment_id: both, condition: {all: [{segment: big}, {segment: late}]}}\n"
        "  - {segment_id: late, condition: {lifecycle: [dormant]}}\n"
        "  - {segment_id: big, condition: {segment: elsewhere}}\n"
    )
    assert [s.segment_id for s in load_segments(path)] == ["big", "late", "both"]


def test_campaign_keys_are_required_and_unique(tmp_path: Path) -> None:
    path = tmp_path / "campaigns.yaml"
    path.write_text("campaigns:\n  - {name: no key}\n")
    with pytest.raises(DemoFileError, match=r"campaigns\[0\]\.key: required"):
        load_campaigns(path)
    path.write_text("campaigns:\n  - {key: a, name: x}\n  - {key: a, name: y}\n")
    with pytest.raises(DemoFileError, match="'a' appears twice"):
        load_campaigns(path)
