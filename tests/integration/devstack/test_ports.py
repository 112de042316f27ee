"""The dev stack's port plan on real sockets: your settings win over defaults and last time."""

from __future__ import annotations

import socket

import pytest

from services.devstack.embedded import free_port
from services.devstack.ports import PortPlan, PortProblem

SETTINGS = ["INGEST_LISTEN", "INGEST_METRICS_PORT", "PROJECTOR_LISTEN"]


def test_a_port_you_ask_for_is_never_given_to_another_child_first() -> None:
    mine = free_port()
    # Last time ingest had `mine`; now PROJECTOR_LISTEN asks for it.
    plan = PortPlan({"PROJECTOR_LISTEN": f"127.0.0.1:{mine}"}, {"ingest": mine}, SETTINGS)
    ingest = plan.listen("ingest", "INGEST_LISTEN", 50051)
    projector = plan.listen("projector", "PROJECTOR_LISTEN", 50052)
    assert projector.port == mine and projector.source == f"PROJECTOR_LISTEN=127.0.0.1:{mine}"
    assert ingest.port != mine and ingest.source == f"{mine} was in use"
    assert plan.server("postgres") not in {mine, ingest.port}


def test_every_interface_is_reached_on_loopback_and_port_zero_is_a_free_one() -> None:
    plan = PortPlan({"INGEST_LISTEN": ":0", "INGEST_METRICS_PORT": "0"}, {}, SETTINGS)
    ingest = plan.listen("ingest", "INGEST_LISTEN", 50051)
    assert ingest.host == "0.0.0.0" and ingest.port > 0
    assert ingest.client_address == f"127.0.0.1:{ingest.port}"
    assert plan.metrics("ingest", "INGEST_METRICS_PORT", 9101) is None  # 0: metrics off


def plan_all(plan: PortPlan) -> None:
    plan.listen("ingest", "INGEST_LISTEN", 50051)
    plan.metrics("ingest", "INGEST_METRICS_PORT", 9101)
    plan.listen("projector", "PROJECTOR_LISTEN", 50052)


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        ({"INGEST_LISTEN": "50051"}, "expected host:port"),
        ({"INGEST_LISTEN": "127.0.0.1:70000"}, "expected host:port"),
        ({"INGEST_METRICS_PORT": "-1"}, "expected a port number"),
        ({"INGEST_LISTEN": "127.0.0.1:{p}", "PROJECTOR_LISTEN": "127.0.0.1:{p}"}, "in use"),
    ],
)
def test_a_setting_that_cannot_be_honoured_names_itself(environ: dict, says: str) -> None:
    port = free_port()
    environ = {k: v.format(p=port) for k, v in environ.items()}
    with pytest.raises(PortProblem, match=says):
        plan_all(PortPlan(environ, {}, SETTINGS))


def test_a_port_something_listens_on_is_refused() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        plan = PortPlan({"INGEST_METRICS_PORT": str(port)}, {}, SETTINGS)
        with pytest.raises(PortProblem, match=f"INGEST_METRICS_PORT={port}: port {port} is in use"):
            plan.metrics("ingest", "INGEST_METRICS_PORT", 9101)
