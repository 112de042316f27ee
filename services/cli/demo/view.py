"""How the demo looks: a rich dashboard while it runs, plain lines when it ends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from services.cli.demo.snapshot import Snapshot
from services.cli.simulator import Summary
from services.cli.simulator.model import US_PER_S

_BAR = 24
_STATE_STYLE = {
    "new": "cyan",
    "active": "green",
    "loyal": "bold green",
    "reactivated": "yellow",
    "dormant": "magenta",
    "churned": "red",
}


@dataclass(frozen=True)
class Progress:
    """Where the demo stands, beside the services' figures."""

    simulation: Summary | None
    status: str
    elapsed_s: float


def _when(us: int) -> str:
    return datetime.fromtimestamp(us / US_PER_S, UTC).strftime("%Y-%m-%d %H:%M")


def lag_text(snapshot: Snapshot, simulation: Summary | None) -> str:
    """How far the projector is behind the newest event ingest stored for the simulator."""
    head = simulation.last_position if simulation else 0
    lag = max(0, head - snapshot.position)
    return (
        f"projector: read the log up to position {snapshot.position:,}; ingest stored the"
        f" simulated events up to {head:,}: lag {lag:,} events"
    )


def simulation_text(simulation: Summary | None) -> str:
    if simulation is None:
        return "simulator: starting"
    if simulation.duplicate and not simulation.accepted:
        again = " (all duplicate: this seed ran today already; --seed N simulates others)"
    else:
        again = ""
    return (
        f"simulator: {simulation.users:,} users, clock {_when(simulation.simulated_us)} UTC"
        f" ({simulation.progress:.0%}); events sent {simulation.sent:,}, accepted"
        f" {simulation.accepted:,}, duplicate {simulation.duplicate:,},"
        f" rejected {simulation.rejected:,} ({simulation.rate:,.0f}/s){again}"
    )


def _lifecycle_table(snapshot: Snapshot) -> Table:
    table = Table(title="lifecycle", title_justify="left", expand=False)
    table.add_column("state")
    table.add_column("users", justify="right")
    table.add_column("", min_width=_BAR)
    top = max(snapshot.lifecycle.values(), default=0) or 1
    for state, users in snapshot.lifecycle.items():
        style = _STATE_STYLE.get(state, "")
        bar = "█" * round(_BAR * users / top)
        table.add_row(Text(state, style=style), f"{users:,}", Text(bar, style=style))
    table.add_row("total", f"{snapshot.total_users:,}", "", style="bold")
    return table


def _segments_table(snapshot: Snapshot) -> Table:
    table = Table(title="segments", title_justify="left")
    table.add_column("segment")
    table.add_column("state")
    table.add_column("members", justify="right")
    table.add_column("entered", justify="right", style="green")
    table.add_column("exited", justify="right", style="red")
    for s in snapshot.segments:
        state = f"{s.state} v{s.active_version or s.version}"
        if s.building_version:
            state += f" (building v{s.building_version})"
        table.add_row(
            s.display_name,
            state,
            f"{s.size:,}",
            f"{snapshot.entered[s.segment_id]:,}",
            f"{snapshot.exited[s.segment_id]:,}",
        )
    return table


def _campaigns_table(snapshot: Snapshot) -> Table:
    table = Table(title="campaigns (in-app)", title_justify="left")
    for name in ("campaign", "trigger"):
        table.add_column(name)
    for name in ("triggered", "sent", "control", "pending"):
        table.add_column(name, justify="right", style="bold" if name == "sent" else "")
    table.add_column("not sent, why", style="dim")
    for c in snapshot.campaigns:
        counts = (c.triggered, c.sent, c.control, c.pending)
        table.add_row(c.name, c.trigger, *(f"{n:,}" for n in counts), c.reasons())
    return table


def _messages_table(snapshot: Snapshot) -> Table:
    table = Table(
        title="latest in-app messages (of users who just entered a segment)",
        title_justify="left",
        show_header=False,
        min_width=80,
    )
    table.add_column("when", style="dim")
    table.add_column("user")
    table.add_column("message", overflow="fold", max_width=90)
    for m in snapshot.messages:
        when = datetime.fromtimestamp(m.created_s).strftime("%H:%M:%S")  # local time
        text = Text(f"{m.campaign}: ", style="dim")
        text.append(m.title, style="bold")
        text.append(f" {m.body}")
        table.add_row(when, m.user_id, text)
    if not snapshot.messages:
        table.add_row("", "", Text("none since the demo started", style="dim"))
    return table


def dashboard(snapshot: Snapshot, progress: Progress) -> RenderableType:
    """The live screen: who is where, what campaigns did, and how far everything got."""
    header = Text()
    header.append("cohortflow demo", style="bold")
    header.append(f"  {progress.status}  ({progress.elapsed_s:,.0f} s)\n", style="dim")
    header.append(simulation_text(progress.simulation) + "\n")
    header.append(lag_text(snapshot, progress.simulation))
    grid = Table.grid(padding=(0, 2))
    grid.add_row(_lifecycle_table(snapshot), _segments_table(snapshot))
    parts: list[RenderableType] = [
        header,
        grid,
        _campaigns_table(snapshot),
        _messages_table(snapshot),
    ]
    if snapshot.problem:
        parts.append(Text(f"last poll failed: {snapshot.problem}", style="yellow"))
    return Group(*parts)


def summary_lines(snapshot: Snapshot, progress: Progress) -> list[str]:
    """The plain summary a --once or --duration run ends with (one fact a line)."""
    lines = [f"cohortflow demo: {progress.status} after {progress.elapsed_s:,.0f} s"]
    lines.append(simulation_text(progress.simulation))
    lines.append(lag_text(snapshot, progress.simulation))
    counts = ", ".join(f"{state} {n:,}" for state, n in snapshot.lifecycle.items())
    lines.append(f"lifecycle: {counts} (total {snapshot.total_users:,})")
    for s in snapshot.segments:
        lines.append(
            f"segment {s.segment_id}: {s.state} v{s.active_version or s.version},"
            f" {s.size:,} members (entered {snapshot.entered[s.segment_id]:,},"
            f" exited {snapshot.exited[s.segment_id]:,})"
        )
    for c in snapshot.campaigns:
        lines.append(
            f"campaign {c.key} ({c.trigger}): triggered {c.triggered:,}, sent {c.sent:,},"
            f" control {c.control:,}, pending {c.pending:,}, not sent {c.suppressed:,}"
            f" ({c.reasons(most=6)})"
        )
    sent = sum(c.sent for c in snapshot.campaigns)
    lines.append(f"in-app messages sent: {sent:,}")
    for m in snapshot.messages[:3]:
        lines.append(f"latest message to {m.user_id} ({m.campaign}): {m.title} | {m.body}")
    if snapshot.problem:
        lines.append(f"last poll failed: {snapshot.problem}")
    return lines
