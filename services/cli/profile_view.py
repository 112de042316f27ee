"""Rich renderings of ProfileService answers: a profile panel, lifecycle and timeline tables."""

from __future__ import annotations

from cohortflow.profiles.v1 import profiles_pb2
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table

from services.cli.output import rfm_label, state_label, time_text, value_text


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def _facts(profile: profiles_pb2.Profile) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    lifecycle = (
        f"{state_label(profile.lifecycle_state)} since {time_text(profile.lifecycle_since_time)}"
    )
    if profile.usual_interval_days:
        lifecycle += f" (usual gap {profile.usual_interval_days:.1f} days)"
    grid.add_row("lifecycle", lifecycle)
    rfm = rfm_label(profile.rfm_group)
    if profile.HasField("rfm_scores"):
        s = profile.rfm_scores
        rfm += f" (R{s.recency} F{s.frequency} M{s.monetary})"
    grid.add_row("rfm", rfm)
    grid.add_row(
        "activity",
        f"{_count(profile.event_count, 'event')} on"
        f" {_count(profile.active_days, 'active day')},"
        f" first seen {time_text(profile.first_seen_time)},"
        f" last seen {time_text(profile.last_seen_time)}",
    )
    contacts = [
        f"{label} {value}"
        for label, value in (
            ("email", profile.email),
            ("phone", profile.phone),
            (
                "push token",
                profile.push_token[:16] + ("..." if len(profile.push_token) > 16 else ""),
            ),
        )
        if value
    ]
    grid.add_row("contact", ", ".join(contacts) or "-")
    consents = [
        f"{channel} {'granted' if granted else 'denied'}"
        for channel, granted in sorted(profile.consents.items())
    ]
    grid.add_row("consent", ", ".join(consents) or "-")
    place = [profile.city, profile.country, profile.timezone]
    if profile.HasField("location"):
        place.append(f"({profile.location.latitude:.4f}, {profile.location.longitude:.4f})")
    grid.add_row("place", ", ".join(p for p in place if p) or "-")
    traits = [f"{key}={value_text(value)}" for key, value in sorted(profile.traits.items())]
    grid.add_row("traits", ", ".join(traits) or "-")
    return grid


def profile_panel(profile: profiles_pb2.Profile) -> Panel:
    parts: list[RenderableType] = [_facts(profile)]
    if profile.event_counts:
        counts = Table(title="events by name", title_justify="left", expand=False)
        counts.add_column("event")
        counts.add_column("count", justify="right")
        for name, count in sorted(profile.event_counts.items(), key=lambda kv: (-kv[1], kv[0])):
            counts.add_row(name, str(count))
        parts.append(counts)
    return Panel(
        Group(*parts),
        title=f"user [bold]{profile.user_id}[/bold]",
        subtitle=f"position {profile.position}",
        expand=False,
    )


def lifecycle_table(summary: profiles_pb2.GetLifecycleSummaryResponse) -> Table:
    when = time_text(summary.as_of_time, empty="now")
    table = Table(
        title=f"lifecycle as of {when}", caption=f"log position {summary.position}", min_width=40
    )
    table.add_column("state")
    table.add_column("users", justify="right")
    table.add_column("share", justify="right")
    total = summary.total_users
    for count in summary.counts:
        share = f"{100 * count.users / total:.1f}%" if total else "-"
        table.add_row(state_label(count.state), f"{count.users:,}", share)
    table.add_section()
    table.add_row("total", f"{total:,}", "100.0%" if total else "-", style="bold")
    return table


def _change(entry: profiles_pb2.TimelineEntry) -> tuple[str, str]:
    if entry.WhichOneof("change") == "lifecycle":
        return "lifecycle", (
            f"{state_label(entry.lifecycle.from_state)} -> {state_label(entry.lifecycle.to_state)}"
        )
    rfm = entry.rfm
    return "rfm", f"{rfm_label(rfm.from_group)} -> {rfm_label(rfm.to_group)}"


def timeline_table(user: str, entries: list[profiles_pb2.TimelineEntry]) -> Table:
    table = Table(title=f"timeline of {user} ({len(entries)} changes)")
    for name, justify in (
        ("#", "right"),
        ("effective", "left"),
        ("kind", "left"),
        ("change", "left"),
        ("cause", "left"),
        ("position", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for entry in entries:
        kind, change = _change(entry)
        cause = entry.cause_kind + (f": {entry.cause_event_name}" if entry.cause_event_name else "")
        if entry.correction:
            cause += " (correction)"
        table.add_row(
            str(entry.user_sequence),
            time_text(entry.effective_time),
            kind,
            change,
            cause,
            str(entry.position),
        )
    return table
