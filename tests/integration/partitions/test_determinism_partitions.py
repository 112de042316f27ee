"""`cohortflow determinism` on a partitioned deployment: traffic through ingest, the change
stream recorded, every partition (or one) replayed from its own log and compared."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from typing import Any

from services.common.grpc.auth import ApiKeys
from services.eventlog.partitioned import PartitionedLog
from services.ingest.bootstrap import start_ingest
from services.ingest.config import IngestSettings
from tests.integration.partitions.conftest import P
from tests.support.cli import COMMAND
from tests.support.processes import REPO
from tests.support.projector import in_process_projector


def determinism(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, "determinism", *args],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def test_every_partition_replays_to_what_it_published(
    partitioned: tuple[str, PartitionedLog], nats_server: Any
) -> None:
    url, _log = partitioned
    ingest = await start_ingest(
        IngestSettings(DATABASE_URL=url, INGEST_LISTEN="127.0.0.1:0", INGEST_HTTP_LISTEN="0"),
        ApiKeys([("app", "key-app")]),
    )
    try:
        async with in_process_projector(url, nats_server.url) as running:
            env = {
                "COHORTFLOW_INGEST": f"127.0.0.1:{ingest.port}",
                "COHORTFLOW_API_KEY": "key-app",
                "DATABASE_URL": url,
                "NATS_URL": nats_server.url,
                "CHANGES_STREAM": running.streams.stream,
                "CHANGES_SUBJECT_PREFIX": running.streams.subject_prefix,
            }
            run = await _in_thread(determinism, env, "--users", "40", "--days", "6", "--seed", "5")
            assert run.returncode == 0, run.stdout + run.stderr
            per_partition = dict(
                (int(p), int(n.replace(",", "")))
                for p, n in re.findall(r"partition (\d+): identical: ([\d,]+) changes", run.stdout)
            )
            assert set(per_partition) == set(range(P)), run.stdout
            assert all(n > 0 for n in per_partition.values()), run.stdout
            total = re.search(r"identical: ([\d,]+) changes published live equal", run.stdout)
            assert total and int(total.group(1).replace(",", "")) == sum(per_partition.values())
            assert sum(per_partition.values()) >= 40  # at least each new user's first change

            # One partition, replayed under other policies than the live ones: named.
            other = await _in_thread(
                determinism,
                env,
                *("--users", "30", "--days", "6", "--seed", "6", "--partition", "1"),
                *("--policies", '{"*": {"lifecycle": {"new_days": 1}}}'),
            )
            assert other.returncode == 1, other.stdout + other.stderr
            assert "partition 1: DIFFERENT: " in other.stderr, other.stderr
            assert "partition 0" not in other.stdout + other.stderr
    finally:
        await ingest.stop(1)


async def _in_thread(*args: Any) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(*args)
