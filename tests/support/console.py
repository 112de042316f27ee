"""The whole suite plus the console, as processes, for the console's tests.

Two apps ("shop" and "other") with their keys, so tests can check that nothing of one
shows up for a user of the other. Console users: ana (editor of shop), vic (viewer of
shop), olga (editor of other); their password is PASSWORD.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from services.console.users import ConsoleUsers
from services.devstack.embedded import free_port
from tests.support.pipeline import Pipeline
from tests.support.processes import ServiceProcess

KEYS = "shop:key-shop,other:key-other"
PASSWORD = "correct horse battery"
USERS = {"ana": {"shop": "editor"}, "vic": {"shop": "viewer"}, "olga": {"other": "editor"}}


class ConsoleStack:
    def __init__(self, database_url: str, nats_url: str, workdir: Path) -> None:
        keys = {"COHORTFLOW_API_KEYS": KEYS}
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
            "COHORTFLOW_API_KEYS": KEYS,
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
            for name, apps in USERS.items():
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

    async def close(self) -> None:
        self.pipeline.stop()
        await self.pipeline.close()


def signed_in(stack: ConsoleStack, username: str) -> httpx.Client:
    """An HTTP client with a session of `username` (cookies kept), through the login form."""
    client = httpx.Client(base_url=stack.url, follow_redirects=False, timeout=60)
    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    client.cookies.set("cf_login_csrf", _cookie(page, "cf_login_csrf"), path="/login")
    reply = client.post(
        "/login", data={"csrf_token": token, "username": username, "password": PASSWORD}
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
