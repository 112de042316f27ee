"""`cohortflow rebuild --check` on a partitioned deployment: each partition rebuilt from its
own log (relayed definitions, hand-overs and forwarded events as they stand in it) equals
its live read models; a tampered row is reported with its partition."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import psycopg

from services.eventlog.partitioned import PartitionedLog
from services.projector.partitions.settled import wait_settled
from tests.integration.partitions.conftest import P
from tests.support.cli import COMMAND
from tests.support.partitioned import apart, route, story, wait_live
from tests.support.processes import REPO
from tests.support.projector import in_process_projector
from tests.support.segment_history import SEGMENTS, history, save_segments


async def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`cohortflow ARGS` on the deployment (off the event loop the projector runs on)."""
    return await asyncio.to_thread(run, url, [*COMMAND, *args])


def run(url: str, command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        env={**os.environ, "DATABASE_URL": url},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def flat(result: subprocess.CompletedProcess[str]) -> str:
    """Its stderr as one line (a usage error comes in a box, wrapped)."""
    return " ".join(result.stderr.replace("│", " ").split())


def identical(stdout: str) -> dict[int, int]:
    """Partition -> changes compared, from the check's lines."""
    out = {}
    for line in stdout.splitlines():
        if line.startswith("check: partition ") and ": identical: " in line:
            head, rest = line.removeprefix("check: partition ").split(": identical: ")
            out[int(head)] = int(rest.split(" ")[0].replace(",", ""))
    return out


async def test_each_partition_rebuilds_to_its_live_changes_and_a_tampered_row_names_it(
    partitioned: tuple[str, PartitionedLog], nats_server: Any
) -> None:
    url, log = partitioned
    events = history(3)
    links: dict[tuple[str, str], str] = {}
    route(log, events[:150], links)
    save_segments(log.home, SEGMENTS)
    route(log, events[150:], links)
    route(log, story("ada", apart("ada", P)), links)  # a hand-over between partitions
    async with in_process_projector(url, nats_server.url):
        await wait_live(log, len(SEGMENTS))
        await wait_settled(log.deployment, timeout_s=60)

        done = await cli(url, "rebuild", "--check", "--schema", "rb_all")
        assert done.returncode == 0, done.stdout + done.stderr
        compared = identical(done.stdout)
        assert set(compared) == set(range(P)), done.stdout
        assert sum(compared.values()) > 50, done.stdout
        assert "dropped schema rb_all" in done.stdout

        one = await cli(url, "rebuild", "--check", "--partition", "2", "--schema", "rb_two")
        assert one.returncode == 0, one.stdout + one.stderr
        assert identical(one.stdout) == {2: compared[2]}

        # Partition 2's timeline is tampered with: named, the other partitions pass.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "UPDATE projector_changes SET to_value = 'tampered' WHERE id ="
                " (SELECT min(id) FROM projector_changes WHERE partition = 2)"
            )
        bad = await cli(url, "rebuild", "--check", "--schema", "rb_bad")
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert set(identical(bad.stdout)) == {0, 1, 3}, bad.stdout
        assert "check: partition 2: DIFFERENT: change #1 differs" in bad.stderr, bad.stderr
        assert "to_value: live='tampered'" in bad.stderr
        elsewhere = await cli(url, "rebuild", "--check", "--partition", "1", "--schema", "rb_one")
        assert elsewhere.returncode == 0, elsewhere.stdout + elsewhere.stderr

    # Refusals: a partition the deployment lacks; a swap (one-partition deployments only).
    missing = await cli(url, "rebuild", "--check", "--partition", "4")
    assert missing.returncode == 2
    assert "partition 4 does not exist: this deployment has partitions 0..3" in flat(missing)
    swap = await cli(url, "rebuild", "--swap")
    assert swap.returncode == 2 and "this one has 4 partitions" in flat(swap)
    module = await asyncio.to_thread(
        run, url, [sys.executable, "-m", "services.projector.rebuild", "--check"]
    )
    assert module.returncode == 2 and "cohortflow rebuild --check" in module.stderr
    with psycopg.connect(url) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rb\\_%'"
        ).fetchone()
    assert left == (0,)  # every rebuild's schema was dropped, pass or fail
