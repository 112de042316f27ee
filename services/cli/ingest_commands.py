"""`cohortflow track` and `cohortflow identify`: one event or one profile update."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer
from cohortflow.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cohortflow.types.v1 import types_pb2

from services.cli import output
from services.cli.client import ask, target_of
from services.cli.values import BadValue, assignment, parse_time, timestamp

PropOption = Annotated[
    list[str] | None,
    typer.Option(
        "--prop",
        "-p",
        help="A property KEY=VALUE (typed: true/false, numbers, ISO times, else text)"
        " or KEY:=JSON; repeat for more.",
    ),
]
EventIdOption = Annotated[
    str | None, typer.Option(help="Idempotency key (default: a new random id).")
]
TimeOption = Annotated[
    str | None, typer.Option("--time", help="Event time, ISO-8601 (default: now, by the server).")
]
CHANNELS = {
    "in_app": types_pb2.CHANNEL_IN_APP,
    "email": types_pb2.CHANNEL_EMAIL,
    "push": types_pb2.CHANNEL_PUSH,
    "sms": types_pb2.CHANNEL_SMS,
    "webhook": types_pb2.CHANNEL_WEBHOOK,
}
CONSENT = {"granted": ingest_pb2.Consent.STATUS_GRANTED, "denied": ingest_pb2.Consent.STATUS_DENIED}


def _assignments(items: list[str] | None, option: str) -> dict[str, types_pb2.Value]:
    out = {}
    for item in items or []:
        try:
            key, value = assignment(item)
        except BadValue as problem:
            raise typer.BadParameter(str(problem), param_hint=option) from None
        out[key] = value
    return out


def _time(text: str | None, into: object) -> None:
    if text is None:
        return
    try:
        into.CopyFrom(timestamp(parse_time(text)))  # type: ignore[attr-defined]
    except BadValue as problem:
        raise typer.BadParameter(str(problem), param_hint="--time") from None


def _consents(items: list[str] | None) -> list[ingest_pb2.Consent]:
    out = []
    for item in items or []:
        channel_name, _, status = item.lower().partition("=")
        if channel_name not in CHANNELS or status not in CONSENT:
            msg = (
                f"{item!r} is not CHANNEL=granted|denied with CHANNEL one of {', '.join(CHANNELS)}"
            )
            raise typer.BadParameter(msg, param_hint="--consent")
        out.append(ingest_pb2.Consent(channel=CHANNELS[channel_name], status=CONSENT[status]))
    return out


def result_line(result: ingest_pb2.EventResult) -> str:
    status = ingest_pb2.EventResult.Status.Name(result.status).removeprefix("STATUS_")
    return f"{status} event_id={result.event_id} position={result.position}"


def track(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="The user's id.")],
    name: Annotated[str, typer.Argument(help='What happened, e.g. "Order Completed".')],
    prop: PropOption = None,
    event_id: EventIdOption = None,
    time: TimeOption = None,
) -> None:
    """Send one event and print its result (ACCEPTED or DUPLICATE, and its log position)."""
    target = target_of(ctx)
    event = ingest_pb2.Event(
        event_id=event_id or f"cli-{uuid.uuid4().hex}",
        user_id=user,
        name=name,
        properties=_assignments(prop, "--prop"),
    )
    _time(time, event.event_time)
    request = ingest_pb2.TrackRequest(event=event)
    # idempotent: the event id was chosen above, so a retry sends the same one
    reply = ask(
        target, "ingest", ingest_pb2_grpc.IngestServiceStub, "Track", request, idempotent=True
    )
    output.stdout().print(result_line(reply.result), markup=False)


def identify(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="The user's id.")],
    trait: Annotated[
        list[str] | None, typer.Option(help="A trait KEY=VALUE (typed like --prop); repeatable.")
    ] = None,
    email: Annotated[str | None, typer.Option(help="Email address.")] = None,
    phone: Annotated[str | None, typer.Option(help="Phone number, E.164 (+4915112345678).")] = None,
    push_token: Annotated[str | None, typer.Option(help="Push token of the device.")] = None,
    consent: Annotated[
        list[str] | None,
        typer.Option(
            help="CHANNEL=granted|denied (in_app, email, push, sms, webhook); repeatable."
        ),
    ] = None,
    timezone: Annotated[
        str | None, typer.Option(help="IANA time zone, e.g. Europe/Berlin.")
    ] = None,
    country: Annotated[str | None, typer.Option(help="ISO 3166-1 alpha-2 code, e.g. DE.")] = None,
    city: Annotated[str | None, typer.Option(help="City name.")] = None,
    anonymous_id: Annotated[
        str | None, typer.Option(help="Link this anonymous id's history to the user.")
    ] = None,
    event_id: EventIdOption = None,
    time: TimeOption = None,
) -> None:
    """Record traits, contacts, consent, time zone and location of a user."""
    target = target_of(ctx)
    request = ingest_pb2.IdentifyRequest(
        event_id=event_id or f"cli-{uuid.uuid4().hex}",
        user_id=user,
        anonymous_id=anonymous_id or "",
        traits=_assignments(trait, "--trait"),
        contact=ingest_pb2.Contact(
            email=email or "", phone=phone or "", push_token=push_token or ""
        ),
        consents=_consents(consent),
        timezone=timezone or "",
    )
    if country or city:
        request.location.CopyFrom(ingest_pb2.Location(country=country or "", city=city or ""))
    _time(time, request.event_time)
    reply = ask(
        target, "ingest", ingest_pb2_grpc.IngestServiceStub, "Identify", request, idempotent=True
    )
    output.stdout().print(result_line(reply.result), markup=False)
