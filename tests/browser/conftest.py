"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, against the console
and the real services; screenshots go to var/screenshots/ (git-ignored)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from services.migrate import migrate
from tests.support.console import ConsoleStack
from tests.support.infra import NatsForTests, PostgresForTests

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def stack(
    postgres: PostgresForTests, nats_server: NatsForTests, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleStack]:
    url = postgres.create_database()
    migrate(url)
    running = ConsoleStack(url, nats_server.url, Path(tmp_path_factory.mktemp("browser")))
    try:
        running.start()
        yield running
    finally:
        running.close()
        postgres.drop_database(url)


def sign_in(browser: Browser, stack: ConsoleStack, username: str) -> Page:
    from tests.support.console import PASSWORD

    page = browser.new_page(viewport={"width": 1360, "height": 1000})
    page.goto(stack.url + "/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#sign-in")
    page.wait_for_selector("#whoami")
    return page


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
