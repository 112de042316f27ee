"""`cohortflow erase USER`: erase a user's personal data (PrivacyService.EraseUser)."""

from __future__ import annotations

import getpass
import uuid
from typing import Annotated

import typer
from cohortflow.ingest.v1 import privacy_pb2, privacy_pb2_grpc

from services.cli import output
from services.cli.client import ask, target_of


def erase(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="The user's id.")],
    requested_by: Annotated[
        str | None,
        typer.Option(help="Who asked (a ticket, an operator); audited. Default: your login."),
    ] = None,
    request_id: Annotated[
        str | None, typer.Option(help="Idempotency key (default: a new random id).")
    ] = None,
) -> None:
    """Erase a user: destroy the keys of their personal data (and of their anonymous ids),
    audited; they leave every segment and get no further message. Cannot be undone."""
    request = privacy_pb2.EraseUserRequest(
        user_id=user,
        requested_by=requested_by or getpass.getuser(),
        request_id=request_id or f"cli-{uuid.uuid4().hex}",
    )
    # idempotent: the request id was chosen above, so a retry erases once
    reply = ask(
        target_of(ctx),
        "ingest",
        privacy_pb2_grpc.PrivacyServiceStub,
        "EraseUser",
        request,
        idempotent=True,
    )
    anonymous = ",".join(reply.anonymous_ids) or "-"
    output.stdout().print(
        f"ERASED user={user} request_id={reply.request_id} keys_destroyed={reply.keys_destroyed}"
        f" anonymous_ids={anonymous} position={reply.position}",
        markup=False,
    )
