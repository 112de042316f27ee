"""The whole suite plus the console, as processes, for the console's tests.

Two apps (default "shop" and "other") with their keys "key-<app>", so tests can check that
nothing of one shows up for a user of the other. Console users: ana (editor of the first),
vic (viewer of the first), olga (editor of the second); their password is PASSWORD.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import psycopg

from services.console.users import ConsoleUsers
from services.devstack.embedded import free_port
from services.projector.rollup_schema import FOLD_NAME
from tests.support.pipeline import Pipeline
from tests.support.processes import ServiceProcess

PASSWORD = "correct horse battery"


class ConsoleStack:
    def __init__(
        self,
        database_url: str,
        nats_url: str,
        workdir: Path,
        apps: tuple[str, str] = ("shop", "other"),
    ) -> None:
        first, second = apps
        self.users = {
            "ana": {first: "editor"},
            "vic": {first: "viewer"},
            "olga": {second: "editor"},
        }
        keys_text = ",".join(f"{app}:key-{app}" for app in apps)
        keys = {"COHORTFLOW_API_KEYS": keys_text}
        self.pipeline = Pipeline(
            database_url,
            nats_url,
            workdir,
            ingest=keys,
            projector={**keys, "PROJECTOR_ROLLUP_POLL_S": "0.2"},
            campaign=keys,
        )
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "DATABASE_URL": database_url,
            "NATS_URL": nats_url,
            "COHORTFLOW_API_KEYS": keys_text,
            "CONSOLE_LISTEN": f"127.0.0.1:{self.port}",
            "CONSOLE_METRICS_PORT": "0",
            "CONSOLE_PROJECTOR_ADDRESS": self.pipeline.projector_address,
            "CONSOLE_CAMPAIGN_ADDRESS": self.pipeline.campaign_address,
            "CHANGES_STREAM": self.pipeline.streams.stream,
            "CHANGES_SUBJECT_PREFIX": self.pipeline.streams.subject_prefix,
        }
        self.console: ServiceProcess | None = None

    def start(self) -> None:
        users = ConsoleUsers.open(self.database_url, 1)
        try:
            for name, apps in self.users.items():
                users.add(name, PASSWORD, apps)
        finally:
            users.close()
        self.console = self.pipeline._spawn("services.console", self.env)
        self.pipeline.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.console.process.poll() is not None:
                raise RuntimeError("console did not start:\n" + self.console.output())
            time.sleep(0.1)

    def close(self) -> None:
        """Stop every process and delete the change stream (from a thread of its own, so
        it works beside a running event loop such as Playwright's)."""
        self.pipeline.stop()
        done = threading.Thread(target=asyncio.run, args=(self.pipeline.close(),))
        done.start()
        done.join(60)


def signed_in(stack: ConsoleStack, username: str) -> httpx.Client:
    """An HTTP client with a session of `username` (cookies kept), through the login form."""
    return signed_in_at(stack.url, username, PASSWORD)


def signed_in_at(url: str, username: str, password: str) -> httpx.Client:
    """The same for the console at `url`."""
    client = httpx.Client(base_url=url, follow_redirects=False, timeout=60)
    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    client.cookies.set("cf_login_csrf", _cookie(page, "cf_login_csrf"), path="/login")
    reply = client.post(
        "/login", data={"csrf_token": token, "username": username, "password": password}
    )
    assert reply.status_code == 303, reply.text
    # The cookie is Secure; send it over plain http to 127.0.0.1 as browsers do.
    session = reply.cookies.get("cf_session") or _cookie(reply, "cf_session")
    client.cookies.clear()
    client.cookies.set("cf_session", session)
    return client


def _cookie(reply: httpx.Response, name: str) -> str:
    for header in reply.headers.get_list("set-cookie"):
        if header.startswith(name + "="):
            return header.split("=", 1)[1].split(";", 1)[0]
    raise AssertionError(f"no {name} cookie in {reply.headers}")


def csrf_of(client: httpx.Client, path: str) -> str:
    page = client.get(path)
    return page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]


def grpc_auth(app: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer key-{app}")]


def seed(stack: ConsoleStack, app: str = "shop", users: int = 24) -> int:
    """Events of `users` users over the last days (some several days, some today) through
    ingest; waits until the projector and its rollups have folded them. The log position."""
    import grpc
    from cohortflow.ingest.v1 import ingest_pb2, ingest_pb2_grpc
    from google.protobuf.timestamp_pb2 import Timestamp

    from tests.support.ingest import event

    now = time.time()
    events = []
    for n in range(users):
        first_day = n % 6  # days ago of the user's first event
        for back in range(first_day, -1, -2):
            ts = Timestamp()
            ts.FromSeconds(int(now - back * 86_400 - 60))
            events.append(event("Opened", user_id=f"{app}-u{n:02d}", event_time=ts))
            if n % 3 == 0:
                events.append(
                    event(
                        "Order Completed",
                        user_id=f"{app}-u{n:02d}",
                        event_time=ts,
                        properties={"amount": 10 + n},
                    )
                )
    with grpc.insecure_channel(stack.pipeline.ingest_address) as channel:
        reply = ingest_pb2_grpc.IngestServiceStub(channel).TrackBatch(
            ingest_pb2.TrackBatchRequest(events=events), metadata=grpc_auth(app)
        )
    position = max(r.position for r in reply.results)
    wait_folded(stack, app, position)
    return position


def wait_folded(stack: ConsoleStack, app: str, position: int, timeout: float = 60) -> None:
    """Until the projector has committed `position` and the rollups hold its changes."""
    import grpc
    from cohortflow.analytics.v1 import analytics_pb2, analytics_pb2_grpc
    from cohortflow.profiles.v1 import profiles_pb2, profiles_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(stack.pipeline.projector_address) as channel:
        profiles = profiles_pb2_grpc.ProfileServiceStub(channel)
        analytics = analytics_pb2_grpc.AnalyticsServiceStub(channel)
        summary = profiles.GetLifecycleSummary(
            profiles_pb2.GetLifecycleSummaryRequest(min_position=position),
            metadata=grpc_auth(app),
            timeout=30,
        )
        with psycopg.connect(stack.database_url) as conn:
            last = conn.execute("SELECT coalesce(max(id), 0) FROM projector_changes").fetchone()
        while time.monotonic() < deadline:
            with psycopg.connect(stack.database_url) as conn:
                folded = conn.execute(
                    "SELECT last_id FROM analytics_rollup_position WHERE name = %s", (FOLD_NAME,)
                ).fetchone()
            if folded and last and folded[0] >= last[0]:
                analytics.GetRfmGrid(analytics_pb2.GetRfmGridRequest(), metadata=grpc_auth(app))
                return
            time.sleep(0.1)
        raise TimeoutError(f"rollups did not reach position {position} ({summary.position})")
