"""The three services as processes on one PostgreSQL and NATS: ingest -> projector -> campaign.

Projector and campaign share a change stream of their own (unique per pipeline), so
tests and benchmarks on one NATS server never see each other's changes. The campaign
process can be killed and started again on the same ports and consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import grpc
from cohortflow.ingest.v1 import ingest_pb2
from cohortflow.types.v1 import types_pb2

from services.common.jetstream import ChangeStreamSettings
from services.devstack.embedded import free_port
from tests.support.campaign import campaign_env
from tests.support.changes import Received, delete_stream, unique_streams
from tests.support.ingest import ACCEPTED, IngestClient, event
from tests.support.processes import ServiceProcess, ingest_env

KEYS = "shop:key-shop"


class Pipeline:
    """ingest, projector and campaign as `python -m` processes, started by `start()`.

    `campaign` / `projector` / `ingest` hold extra environment for one service (knobs
    such as CAMPAIGN_ACK_WAIT_S or PROJECTOR_TICK_INTERVAL_S), `common` for all three
    (LOG_LEVEL, say).
    """

    def __init__(
        self,
        database_url: str,
        nats_url: str,
        workdir: Path,
        *,
        campaign: dict[str, str] | None = None,
        projector: dict[str, str] | None = None,
        ingest: dict[str, str] | None = None,
        common: dict[str, str] | None = None,
    ) -> None:
        self.database_url = database_url
        self.nats_url = nats_url
        self.workdir = workdir
        self.streams: ChangeStreamSettings = unique_streams()
        self.ingest_env, self.ingest_address, _ = ingest_env(database_url, KEYS)
        common = common or {}
        self.ingest_env.update({"INGEST_METRICS_PORT": "0", **common, **(ingest or {})})
        projector_port = free_port()
        self.projector_address = f"127.0.0.1:{projector_port}"
        self.projector_env = {
            "DATABASE_URL": database_url,
            "NATS_URL": nats_url,
            "COHORTFLOW_API_KEYS": KEYS,
            "PROJECTOR_LISTEN": self.projector_address,
            "PROJECTOR_METRICS_PORT": "0",
            "CHANGES_STREAM": self.streams.stream,
            "CHANGES_SUBJECT_PREFIX": self.streams.subject_prefix,
            **common,
            **(projector or {}),
        }
        self.campaign_env, self.campaign_address = campaign_env(
            database_url,
            nats_url,
            self.streams,
            **{
                "CAMPAIGN_METRICS_PORT": "0",
                "CAMPAIGN_SEGMENTS_ADDRESS": self.projector_address,
                **common,
                **(campaign or {}),
            },
        )
        self.processes: list[ServiceProcess] = []
        self.campaign: ServiceProcess | None = None

    def start(self) -> None:
        """Start the three at once (imports overlap), then wait until each is healthy."""
        ingest = self._spawn("services.ingest", self.ingest_env)
        projector = self._spawn("services.projector", self.projector_env)
        self.campaign = self._spawn("services.campaign", self.campaign_env)
        ingest.wait_healthy(self.ingest_address)
        projector.wait_healthy(self.projector_address)
        self.campaign.wait_healthy(self.campaign_address)

    def kill_campaign(self) -> None:
        """SIGKILL: no drain, no acks, leases left as they are."""
        assert self.campaign is not None
        self.campaign.kill()

    def restart_campaign(self) -> None:
        self.campaign = self._spawn("services.campaign", self.campaign_env)
        self.campaign.wait_healthy(self.campaign_address)

    def _spawn(self, module: str, env: dict[str, str]) -> ServiceProcess:
        process = ServiceProcess(module, env, self.workdir)
        self.processes.append(process)
        return process

    def stop(self) -> dict[str, int]:
        """SIGTERM whatever still runs, campaign first; exit codes of those that ran."""
        codes: dict[str, int] = {}
        for process in reversed(self.processes):
            if process.process.poll() is None:
                codes[process.module] = process.terminate()
        return codes

    def kill_all(self) -> None:
        for process in self.processes:
            process.kill()

    def output(self) -> str:
        return "\n".join(f"--- {p.log_path.name}\n{p.output()}" for p in self.processes)

    async def close(self) -> None:
        """Kill anything left (after a failure) and delete the change stream."""
        self.kill_all()
        with contextlib.suppress(Exception):
            await delete_stream(self.nats_url, self.streams)


def by_change(changes: list[Received], triggers: Callable[[Received], bool]) -> dict[str, str]:
    """change id -> user of the changes that trigger; asserts each user triggers once."""
    chosen = {r.msg_id: r.header.user_id for r in changes if triggers(r)}
    assert sorted(Counter(chosen.values()).values()) == [1] * len(chosen), chosen
    return chosen


class Tracker:
    """New users' first events through TrackBatch, a few per call at a steady pace;
    `tracked` counts the users whose call has returned."""

    def __init__(self, address: str, users: list[str], per_call: int, every_s: float) -> None:
        self.address = address
        self.users = users
        self.per_call = per_call
        self.every_s = every_s
        self.tracked = 0

    async def run(self) -> None:
        async with grpc.aio.insecure_channel(self.address) as channel:
            ingest = IngestClient(channel, "key-shop")
            for start in range(0, len(self.users), self.per_call):
                chunk = self.users[start : start + self.per_call]
                results = await ingest.track_batch([event("App Opened", user_id=u) for u in chunk])
                assert {r.status for r in results} == {ACCEPTED}
                self.tracked += len(chunk)
                await asyncio.sleep(self.every_s)


async def identify_then_track(address: str, people: dict[str, tuple[str, str, bool]]) -> None:
    """Identify each person (user -> first name, email, consents to email), then track
    their first event, all through IngestService."""
    granted, denied = ingest_pb2.Consent.STATUS_GRANTED, ingest_pb2.Consent.STATUS_DENIED
    async with grpc.aio.insecure_channel(address) as channel:
        ingest = IngestClient(channel, "key-shop")
        for user, (first_name, email, consents) in people.items():
            result = await ingest.identify(
                user_id=user,
                traits={"first_name": types_pb2.Value(string_value=first_name)},
                contact=ingest_pb2.Contact(email=email),
                consents=[
                    ingest_pb2.Consent(
                        channel=types_pb2.CHANNEL_EMAIL, status=granted if consents else denied
                    )
                ],
                timezone="Europe/Berlin",
            )
            assert result.status == ACCEPTED
        results = await ingest.track_batch([event("App Opened", user_id=u) for u in people])
        assert {r.status for r in results} == {ACCEPTED}
