"""The demo from start to end: apply the files, simulate, watch, summarise.

Three ways to end: Ctrl-C (or SIGTERM), `duration_s` elapsed, or, with `once`, the
simulation finished and everything it caused settled (the projector read all of it,
no segment building, campaign figures unchanged for a few polls).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.live import Live

from services.cli.client import Connection, Target
from services.cli.demo.apply import apply_campaigns
from services.cli.demo.files import DemoFiles
from services.cli.demo.snapshot import MembershipWatch, Poller, Snapshot
from services.cli.demo.view import Progress, dashboard, lag_text
from services.cli.segment_apply import Applied, apply_segments
from services.cli.simulator import SimulationConfig, Summary, run_simulation

REFRESH_S = 1.0
STEADY_POLLS = 3  # --once: figures unchanged this many polls in a row count as settled
SETTLE_LIMIT_S = 120.0  # --once: print the summary anyway this long after the simulation


@dataclass(frozen=True)
class DemoOptions:
    simulation: SimulationConfig
    once: bool = False
    # Stop after this many seconds (0: only Ctrl-C, or `once`).
    duration_s: float = 0.0


@dataclass
class Outcome:
    applied: list[Applied]
    snapshot: Snapshot
    progress: Progress
    settled: bool


class _Run:
    def __init__(self, options: DemoOptions, console: Console) -> None:
        self.options = options
        self.console = console
        self.started = time.monotonic()
        self.simulation: Summary | None = None
        self.sim_task: asyncio.Task[Summary] | None = None
        self.sim_done_at: float | None = None
        self.stop = asyncio.Event()
        self.steady = 0
        self.previous: tuple[object, ...] | None = None
        self.ended = ""  # why the run ended, once it has

    def on_progress(self, summary: Summary) -> None:
        self.simulation = summary

    def status(self) -> str:
        if self.ended:
            return self.ended
        if self.sim_task is None or not self.sim_task.done():
            return "simulating"
        return "settling" if self.options.once else "simulation done; Ctrl-C stops"

    def progress(self) -> Progress:
        return Progress(self.simulation, self.status(), time.monotonic() - self.started)

    def finished(self, snapshot: Snapshot) -> bool:
        """Is it time to stop? Sets `ended` to the reason when it is."""
        elapsed = time.monotonic() - self.started
        if self.stop.is_set():
            self.ended = "stopped"
        elif self.options.duration_s and elapsed >= self.options.duration_s:
            self.ended = f"ran for {self.options.duration_s:g} s"
        elif self.options.once and self.sim_done_at is not None:
            figures = snapshot.settled_figures()
            caught_up = (
                self.simulation is None or snapshot.position >= self.simulation.last_position
            )
            steady = caught_up and not snapshot.building and not snapshot.problem
            self.steady = self.steady + 1 if steady and figures == self.previous else 0
            self.previous = figures
            if self.steady >= STEADY_POLLS:
                self.ended = "settled"
            elif time.monotonic() - self.sim_done_at > SETTLE_LIMIT_S:
                self.ended = f"not settled {SETTLE_LIMIT_S:g} s after the simulation"
        return bool(self.ended)


async def run_demo(
    target: Target,
    files: DemoFiles,
    options: DemoOptions,
    console: Console,
    report: Callable[[str], None],
) -> Outcome:
    """Apply `files`, run the simulation and show the dashboard until the run ends."""
    run = _Run(options, console)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, run.stop.set)
    async with (
        Connection(target, "projector") as projector,
        Connection(target, "campaign") as campaign,
    ):
        applied = await apply_segments(projector, files.segments)
        applied += await apply_campaigns(campaign, files.campaigns)
        for a in applied:
            report(f"{a.kind} {a.name}: {a.outcome} (version {a.version})")
        poller = Poller(
            projector,
            campaign,
            tuple(s.segment_id for s in files.segments),
            [a for a in applied if a.kind == "campaign"],
        )
        start = await poller.poll()
        watch = MembershipWatch(target, start.position)
        poller.watch = watch
        watcher = asyncio.create_task(watch.run())
        run.sim_task = asyncio.create_task(
            run_simulation(
                options.simulation, target.ingest, target.required_key(), run.on_progress
            )
        )
        try:
            snapshot = await _watch(run, poller, console)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            watcher.cancel()
            run.sim_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            with contextlib.suppress(asyncio.CancelledError):
                await run.sim_task
    return Outcome(applied, snapshot, run.progress(), run.ended == "settled")


async def _watch(run: _Run, poller: Poller, console: Console) -> Snapshot:
    """Poll once a second until the run ends; live on a terminal, a line now and then else."""
    assert run.sim_task is not None
    live = Live(console=console, refresh_per_second=4, transient=False, auto_refresh=False)
    quiet_lines = 0
    with live if console.is_terminal else contextlib.nullcontext():
        while True:
            snapshot = await poller.poll()
            if run.sim_task.done() and run.sim_done_at is None:
                run.sim_done_at = time.monotonic()
                run.sim_task.result()  # a failed simulation ends the demo with its error
            if console.is_terminal:
                live.update(dashboard(snapshot, run.progress()), refresh=True)
            elif not run.options.once and quiet_lines % 10 == 0:
                console.print(f"{run.status()}: {lag_text(snapshot, run.simulation)}")
            quiet_lines += 1
            if run.finished(snapshot):
                if console.is_terminal:
                    live.update(dashboard(snapshot, run.progress()), refresh=True)
                return snapshot
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.stop.wait(), REFRESH_S)
