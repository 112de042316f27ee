"""`cohortflow history-imports`: the app's history import jobs, and cancelling a staging one
(the app runs one job at a time: an import that died while uploading leaves its job
staging until it is cancelled)."""

from __future__ import annotations

from typing import Annotated

import typer
from cohortflow.ingest.v1 import history_pb2
from cohortflow.ingest.v1.history_pb2_grpc import HistoryImportServiceStub
from rich.table import Table

from services.cli import output
from services.cli.client import ask, target_of


def history_imports(
    ctx: typer.Context,
    cancel: Annotated[
        str | None, typer.Option(help="Cancel this staging job (its staged events are dropped).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Newest jobs shown.")] = 20,
    json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """List the app's history import jobs, newest first, or cancel a staging one."""
    target = target_of(ctx)
    if cancel is not None:
        request = history_pb2.CancelHistoryImportRequest(job_id=cancel)
        reply = ask(target, "ingest", HistoryImportServiceStub, "CancelHistoryImport", request)
        output.stdout().print(f"history import {reply.job.job_id}: cancelled", markup=False)
        return
    listed = ask(
        target,
        "ingest",
        HistoryImportServiceStub,
        "ListHistoryImports",
        history_pb2.ListHistoryImportsRequest(page_size=limit),
    )
    if json:
        output.print_json(listed)
        return
    table = Table("job", "state", "started", "staged", "appended", "by", box=None)
    for job in listed.jobs:
        state = output.enum_label(history_pb2.HistoryImport.State, job.state)
        if job.failure_reason:
            state += f" ({job.failure_reason})"
        table.add_row(
            job.job_id,
            state,
            output.time_text(job.create_time),
            f"{job.staged_count:,}",
            f"{job.appended_count:,}",
            job.requested_by,
        )
    output.stdout().print(table)
