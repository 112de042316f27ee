"""The console in a real browser: sign in, build and publish a segment, the Sankey, live
changes, and what a viewer or another app's user may not do. Each page is photographed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from cohortflow.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cohortflow.profiles.v1 import profiles_pb2, profiles_pb2_grpc
from cohortflow.segments.v1 import segments_pb2, segments_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp
from playwright.sync_api import Browser, Locator, Page, expect

from services.common.segment_wire import condition_from_dict
from tests.browser.conftest import shot, sign_in
from tests.support.console import ConsoleStack, grpc_auth, seed
from tests.support.ingest import event

DEFINITION = {"all": [{"events": {"name": "Opened", "aggregate": "count", "op": ">=", "value": 2}}]}


@pytest.fixture(scope="module")
def seeded(stack: ConsoleStack) -> ConsoleStack:
    seed(stack, "shop")
    seed(stack, "other", users=5)
    return stack


def _projector(stack: ConsoleStack) -> grpc.Channel:
    return grpc.insecure_channel(stack.pipeline.projector_address)


def _create_segment(stack: ConsoleStack, app: str, segment_id: str) -> None:
    """A segment of the new users of `app`, through SegmentService."""
    with _projector(stack) as channel:
        segments_pb2_grpc.SegmentServiceStub(channel).CreateSegment(
            segments_pb2.CreateSegmentRequest(
                segment_id=segment_id,
                segment=segments_pb2.Segment(condition=condition_from_dict({"lifecycle": ["new"]})),
            ),
            metadata=grpc_auth(app),
        )


def _day_end(day: str) -> Timestamp:
    moment = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1)
    ts = Timestamp()
    ts.FromMicroseconds(int(moment.timestamp() * 1_000_000) - 1)
    return ts


def test_overview_sankey_totals_match_the_lifecycle_summary(browser: Browser, seeded: ConsoleStack):
    page = sign_in(browser, seeded, "ana")
    today = datetime.now(UTC).date()
    start = today - timedelta(days=3)
    page.goto(f"{seeded.url}/apps/shop/?flow_from={start}&flow_to={today}")
    page.wait_for_selector("#chart-lifecycle-sankey[data-drawn=yes]")
    page.wait_for_selector("#chart-lifecycle-series[data-drawn=yes]")
    shot(page, "overview")
    with _projector(seeded) as channel:
        profiles = profiles_pb2_grpc.ProfileServiceStub(channel)
        for day, column in ((str(start), "start"), (str(today), "end")):
            summary = profiles.GetLifecycleSummary(
                profiles_pb2.GetLifecycleSummaryRequest(as_of_time=_day_end(day)),
                metadata=grpc_auth("shop"),
            )
            for count in summary.counts:
                state = profiles_pb2.StateCount.DESCRIPTOR.fields_by_name["state"].enum_type
                name = state.values_by_number[count.state].name.removeprefix("LIFECYCLE_STATE_")
                cell = page.locator(f"#sankey-totals td[data-{column}='{name.lower()}']")
                assert cell.inner_text() == str(count.users), (day, name)
        now = profiles.GetLifecycleSummary(
            profiles_pb2.GetLifecycleSummaryRequest(), metadata=grpc_auth("shop")
        )
    assert now.total_users == 24
    # The Sankey itself: its bands out of each state add up to the users in it at the start,
    # its bands into each state to the users in it at the end.
    figure = json.loads(page.locator("#figure-lifecycle-sankey").text_content() or "")["data"][0]
    labels, link = figure["node"]["label"], figure["link"]
    out_of: dict[str, int] = {}
    into: dict[str, int] = {}
    for source, target, value in zip(link["source"], link["target"], link["value"], strict=True):
        out_of[labels[source]] = out_of.get(labels[source], 0) + value
        into[labels[target]] = into.get(labels[target], 0) + value
    for column, sums in (("start", out_of), ("end", into)):
        day = str(start) if column == "start" else str(today)
        for cell in page.locator(f"#sankey-totals td[data-{column}]").all():
            state = cell.get_attribute(f"data-{column}")
            assert sums.get(f"{state} ({day})", 0) == int(cell.inner_text()), (column, state)
    shown = sum(
        int(v.replace(",", "")) for v in page.locator("#lifecycle-now .value").all_inner_texts()
    )
    assert shown == now.total_users


def test_builder_checks_as_you_type_previews_like_PreviewSegment_and_publishes(
    browser: Browser, seeded: ConsoleStack
):
    page = sign_in(browser, seeded, "ana")
    page.goto(f"{seeded.url}/apps/shop/segments/new")
    page.fill("#segment_id", "openers")
    page.fill("#display_name", "Opened twice")
    page.click("text=Edit as JSON")
    page.fill("#condition-json", json.dumps(DEFINITION))
    page.click("#apply-json")
    expect(page.locator("#validation")).to_have_attribute("data-state", "valid")
    # A typo in the window: the server's own message, naming the node.
    window = page.locator(".node.kind-events input").nth(2)
    window.fill("3x")
    expect(page.locator("#validation")).to_have_attribute("data-state", "invalid")
    problem = page.locator("#validation li").first
    expect(problem).to_contain_text("segment.condition.all[0].events.window")
    expect(problem).to_contain_text("is not a duration")
    expect(page.locator(".node.kind-events.bad")).to_have_count(1)
    shot(page, "builder-invalid")
    window.fill("")
    expect(page.locator("#validation")).to_have_attribute("data-state", "valid")
    page.click("#preview")
    expect(page.locator("#preview-result")).to_have_attribute("data-state", "done", timeout=60_000)
    shown = int(page.inner_text("#preview-members"))
    with _projector(seeded) as channel:
        reply = segments_pb2_grpc.SegmentServiceStub(channel).PreviewSegment(
            segments_pb2.PreviewSegmentRequest(
                segment=segments_pb2.Segment(
                    segment_id="openers", condition=condition_from_dict(DEFINITION)
                )
            ),
            metadata=grpc_auth("shop"),
        )
    assert shown == reply.members > 0
    assert int(page.inner_text("#preview-entering")) == reply.entering
    shot(page, "builder-preview")
    page.click("#publish")
    expect(page.locator("#publish-result")).to_have_attribute("data-state", "published")
    page.click("#published-link")
    expect(page.locator("#segment-state")).to_have_count(1)
    for _ in range(60):
        if page.inner_text("#segment-state") == "active":
            break
        page.wait_for_timeout(500)
        page.reload()
    assert page.inner_text("#segment-state") == "active"
    assert int(page.inner_text("#segment-size").replace(",", "")) == reply.members
    member = page.locator("#members table a").first
    member.click()
    expect(page.locator("#why-cause")).to_contain_text("Entered version 1")
    shot(page, "segment")
    # Members as of yesterday: none (the segment went live today).
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    page.goto(f"{seeded.url}/apps/shop/segments/openers?as_of={yesterday}")
    expect(page.locator("#member-total")).to_contain_text("0 members")
    # A second version from the builder, its diff, and the first restored as a third.
    page.goto(f"{seeded.url}/apps/shop/segments/openers/edit")
    page.locator(".node.kind-events input.event-value").fill("3")
    expect(page.locator("#validation")).to_have_attribute("data-state", "valid")
    page.click("#publish")
    expect(page.locator("#publish-result")).to_have_attribute("data-state", "published")
    page.click("#published-link")
    expect(page.locator(".version[data-version='2'] pre.diff .add")).to_contain_text("value: 3")
    expect(page.locator(".version[data-version='2'] pre.diff .remove")).to_contain_text("value: 2")
    with page.expect_navigation():
        page.click("button[data-restore='1']")
    # GetSegment(min_position=the restore's position) may still show version 2 for a
    # moment (the projector records the new version a batch later): reload until shown.
    for _ in range(60):
        if page.locator(".version[data-version='3']").count():
            break
        page.wait_for_timeout(500)
        page.reload()
    expect(page.locator(".version[data-version='3']")).to_have_count(1)
    expect(page.locator(".version[data-version='3'] pre.diff .add")).to_contain_text("value: 2")
    shot(page, "segment-versions")
    page.goto(f"{seeded.url}/apps/shop/segments")
    expect(page.locator("tr[data-segment=openers] svg.spark")).to_have_count(1)
    shot(page, "segments")


def test_a_live_change_appears_without_reloading(browser: Browser, seeded: ConsoleStack):
    page = sign_in(browser, seeded, "ana")
    page.goto(f"{seeded.url}/apps/shop/live")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "open")
    with grpc.insecure_channel(seeded.pipeline.ingest_address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        stub.Track(
            ingest_pb2.TrackRequest(event=event("Opened", user_id="newcomer")),
            metadata=grpc_auth("shop"),
        )
        stub.Track(
            ingest_pb2.TrackRequest(event=event("Opened", user_id="stranger")),
            metadata=grpc_auth("other"),
        )
    row = page.locator("#live-rows tr[data-user=newcomer]").first
    expect(row).to_contain_text("lifecycle", timeout=30_000)
    expect(row).to_contain_text("new")
    shot(page, "live")
    assert page.locator("#live-rows tr[data-user=stranger]").count() == 0


def test_a_viewer_is_refused_an_edit(browser: Browser, seeded: ConsoleStack):
    page = sign_in(browser, seeded, "vic")
    page.goto(f"{seeded.url}/apps/shop/segments/new")
    page.fill("#segment_id", "viewers-try")
    expect(page.locator("#validation")).to_have_attribute("data-state", "valid")
    page.click("#publish")
    expect(page.locator("#publish-result")).to_have_attribute("data-state", "refused")
    expect(page.locator("#publish-result")).to_contain_text("only editors")
    shot(page, "viewer-refused")


def test_another_apps_segment_is_refused(browser: Browser, seeded: ConsoleStack):
    _create_segment(seeded, "other", "others-only")
    page = sign_in(browser, seeded, "ana")
    reply = page.goto(f"{seeded.url}/apps/shop/segments/others-only")
    assert reply is not None and reply.status == 404
    expect(page.locator("#error-message")).to_contain_text("no segment 'others-only' in this app")
    reply = page.goto(f"{seeded.url}/apps/other/segments/others-only")
    assert reply is not None and reply.status == 403
    expect(page.locator("#error-message")).to_contain_text("no access to app 'other'")
    shot(page, "other-app-refused")
    assert page.locator(".apps a", has_text="other").count() == 0


def test_users_and_campaigns_pages(browser: Browser, seeded: ConsoleStack):
    page = sign_in(browser, seeded, "ana")
    page.goto(f"{seeded.url}/apps/shop/users")
    shot(page, "users")
    page.fill("#user-query", "shop-u03")
    page.click("#user-search")
    expect(page.locator("#profile-lifecycle")).not_to_contain_text("none")
    expect(page.locator("#timeline tr.kind-lifecycle").first).to_contain_text("event: Opened")
    shot(page, "user")
    page.goto(f"{seeded.url}/apps/shop/campaigns/new")
    shot(page, "campaign-new")
    page.click("#create-campaign")
    expect(page.locator("#campaign-state")).to_have_text("active")
    expect(page.locator("#campaign-stats tr[data-group=control]")).to_have_count(1)
    page.click("#pause")
    expect(page.locator("#campaign-state")).to_have_text("paused")
    page.click("#resume")
    expect(page.locator("#campaign-state")).to_have_text("active")
    shot(page, "campaign")
    page.goto(f"{seeded.url}/apps/shop/campaigns")
    expect(page.locator("#campaign-list tbody tr")).to_have_count(1)
    shot(page, "campaigns")


# Every kind of the definition language, as the builder's form (not its JSON box) makes it.
EVERY_KIND = {
    "all": [
        {"trait": {"key": "plan", "op": "in", "values": ["pro", "team"]}},
        {
            "any": [
                {"geo": {"within_km": 10, "of": [52.52, 13.405]}},
                {"geo": {"countries": ["DE", "AT"], "cities": ["Berlin"]}},
            ]
        },
        {"none": [{"lifecycle": ["dormant", "churned"]}, {"rfm": ["lost"]}]},
        {
            "events": {
                "name": "Order Completed",
                "aggregate": "sum",
                "property": "amount",
                "op": ">",
                "value": 20,
                "window": "30d",
                "where": [{"property": "coupon", "op": "=", "value": "spring"}],
            }
        },
        {"recency": {"name": "Opened", "more_than": "7d"}},
        {"first_seen": {"before": "2030-01-01T00:00:00Z"}},
        {"inaction": {"did": "Added to Cart", "not_did": "Order Completed", "within": "24h"}},
        {"segment": "builder-ref"},
        {"trait": {"key": "signed_up", "op": "<", "time": "2030-01-01T00:00:00Z"}},
        {"trait": {"key": "email", "op": "exists"}},
    ]
}


class Builder:
    """Drives the builder's form: each node is found by its path (data-path)."""

    def __init__(self, page: Page) -> None:
        self.page = page

    def node(self, path: str) -> Locator:
        return self.page.locator(f'.node[data-path="segment.condition.{path}"]')

    def kind(self, path: str, kind: str) -> str:
        """Turn the node at `path` into `kind`; its new path."""
        self.node(path).locator(":scope > .node-head select").select_option(kind)
        return path.rsplit(".", 1)[0] + "." + kind

    def add(self, path: str) -> None:
        """A new condition at the end of the all/any/none at `path`."""
        self.node(path).locator(":scope > button.add").click()

    def field(self, path: str, label: str) -> Locator:
        return self.node(path).locator(":scope > label", has_text=label).locator("input, select")

    def fill(self, path: str, label: str, text: str) -> None:
        self.field(path, label).fill(text)

    def pick(self, path: str, label: str, option: str) -> None:
        self.field(path, label).select_option(option)

    def check(self, path: str, option: str, on: bool = True) -> None:
        box = self.node(path).locator(f'.checks input[value="{option}"]')
        box.check() if on else box.uncheck()


def test_the_builder_form_writes_every_kind_of_the_language(browser: Browser, seeded: ConsoleStack):
    _create_segment(seeded, "shop", "builder-ref")
    page = sign_in(browser, seeded, "ana")
    page.goto(f"{seeded.url}/apps/shop/segments/new")
    page.fill("#segment_id", "every-kind")
    b = Builder(page)
    # all[0]: a trait in a list of values (the example's lifecycle, turned into a trait).
    at = b.kind("all[0].lifecycle", "trait")
    b.fill(at, "trait", "plan")
    b.pick(at, "op", "in")
    b.fill(at, "values", "pro, team")
    # all[1]: any of a radius around Berlin, or countries and a city.
    b.add("all")
    b.kind("all[1].lifecycle", "any")
    b.kind("all[1].any[0].lifecycle", "geo")
    b.add("all[1].any")
    at = b.kind("all[1].any[1].lifecycle", "geo")
    b.fill(at, "within km", "")  # no radius: countries and cities instead
    b.fill(at, "countries", "DE, AT")
    b.fill(at, "cities", "Berlin")
    # all[2]: none of two lifecycle states, nor an RFM group.
    b.add("all")
    b.kind("all[2].lifecycle", "none")
    b.check("all[2].none[0].lifecycle", "dormant")
    b.add("all[2].none")
    at = b.kind("all[2].none[1].lifecycle", "rfm")
    b.check(at, "champions", on=False)
    b.check(at, "lost")
    # all[3]: a sum of a property in a window, with a property filter.
    b.add("all")
    at = b.kind("all[3].lifecycle", "events")
    b.fill(at, "event", "Order Completed")
    b.pick(at, "aggregate", "sum")
    b.fill(at, "of property", "amount")
    b.pick(at, "is", ">")
    b.fill(at, "value", "20")
    b.node(at).locator(":scope > .filters > button").click()
    row = b.node(at).locator(".filters .filter").first
    row.locator("label", has_text="property").locator("input").fill("coupon")
    row.locator("label", has_text="value").locator("input").fill("spring")
    # all[4..7]: recency, first seen, inaction, another segment.
    for n, kind in enumerate(("recency", "first_seen", "inaction", "segment"), start=4):
        b.add("all")
        b.kind(f"all[{n}].lifecycle", kind)
    b.fill("all[4].recency", "event", "Opened")
    b.fill("all[5].first_seen", "less than", "")
    b.fill("all[5].first_seen", "before", "2030-01-01T00:00:00Z")
    b.fill("all[6].inaction", "did", "Added to Cart")
    b.fill("all[6].inaction", "and not", "Order Completed")
    b.fill("all[7].segment", "member of segment", "builder-ref")
    # all[8]: a trait compared with a time; all[9]: a trait that exists.
    b.add("all")
    at = b.kind("all[8].lifecycle", "trait")
    b.fill(at, "trait", "signed_up")
    b.pick(at, "op", "<")
    b.field(at, "a time").check()
    b.fill(at, "time (ISO", "2030-01-01T00:00:00Z")
    b.add("all")
    at = b.kind("all[9].lifecycle", "trait")
    b.fill(at, "trait", "email")
    b.pick(at, "op", "exists")

    expect(page.locator("#validation")).to_have_attribute("data-state", "valid")
    assert json.loads(page.input_value("#condition-json")) == EVERY_KIND
    for kind in ("trait", "geo", "lifecycle", "rfm", "events", "recency", "first_seen"):
        expect(page.locator(f".node.kind-{kind}").first).to_be_visible()
    shot(page, "builder-every-kind")
    # The server reads the same definition: its preview equals PreviewSegment's.
    page.click("#preview")
    expect(page.locator("#preview-result")).to_have_attribute("data-state", "done", timeout=60_000)
    with _projector(seeded) as channel:
        reply = segments_pb2_grpc.SegmentServiceStub(channel).PreviewSegment(
            segments_pb2.PreviewSegmentRequest(
                segment=segments_pb2.Segment(
                    segment_id="every-kind", condition=condition_from_dict(EVERY_KIND)
                )
            ),
            metadata=grpc_auth("shop"),
        )
    assert int(page.inner_text("#preview-members")) == reply.members


WELCOME_FORM = """\
name: Welcome
trigger:
  lifecycle: {to_states: [new]}
channel: in_app
variants:
  - name: A
    template: {title: "Welcome", body: "Glad you are here."}
"""


def test_a_campaign_page_lists_its_recent_deliveries_and_the_user_page_the_message(
    browser: Browser, seeded: ConsoleStack
):
    page = sign_in(browser, seeded, "ana")
    page.goto(f"{seeded.url}/apps/shop/campaigns/new")
    page.fill("#campaign-form", WELCOME_FORM)
    page.click("#create-campaign")
    expect(page.locator("#campaign-state")).to_have_text("active")
    expect(page.locator("#campaign-trigger")).to_have_text("lifecycle -> new")
    campaign_url = page.url
    with grpc.insecure_channel(seeded.pipeline.ingest_address) as channel:
        ingest_pb2_grpc.IngestServiceStub(channel).Track(
            ingest_pb2.TrackRequest(event=event("Opened", user_id="welcomed")),
            metadata=grpc_auth("shop"),
        )
    row = page.locator("#campaign-deliveries tr[data-user=welcomed]")
    for _ in range(120):  # the change goes through the projector and the campaign service
        if row.count():
            break
        page.wait_for_timeout(500)
        page.goto(campaign_url)
    expect(row).to_contain_text("sent")
    shot(page, "campaign-deliveries")
    row.locator("a").click()
    expect(page.locator("#deliveries")).to_contain_text("Welcome")
    expect(page.locator("#inbox")).to_contain_text("Glad you are here.")
