"""Run the `cohortflow` executable in tests, and read what it printed and stored."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.eventlog import stored_events

KEY = "key-cli"
_BIN = Path(sys.executable).parent / "cohortflow"
COMMAND = [str(_BIN)] if _BIN.exists() else [sys.executable, "-m", "services.cli"]


@dataclass
class Suite:
    database_url: str
    ingest: str
    projector: str
    workdir: Path
    # The projector's NATS and change stream (for commands that read the stream).
    nats_url: str = ""
    stream: str = ""
    subject_prefix: str = ""

    def stream_env(self) -> dict[str, str]:
        """What a command reading the database and the change stream needs."""
        return {
            "DATABASE_URL": self.database_url,
            "NATS_URL": self.nats_url,
            "CHANGES_STREAM": self.stream,
            "CHANGES_SUBJECT_PREFIX": self.subject_prefix,
        }

    def cli(self, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess:
        """Run `cohortflow ARGS` the way a person would, with the suite in its environment."""
        environment = {
            **os.environ,
            "COHORTFLOW_INGEST": self.ingest,
            "COHORTFLOW_PROJECTOR": self.projector,
            "COHORTFLOW_API_KEY": KEY,
            **env,
        }
        return subprocess.run(
            [*COMMAND, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=environment,
            cwd=self.workdir,
            timeout=120,
        )


SUMMARY = re.compile(
    r"imported (?P<file>\S+): (?P<read>[\d,]+) events read, (?P<accepted>[\d,]+) accepted,"
    r" (?P<duplicate>[\d,]+) duplicate, (?P<rejected>[\d,]+) rejected,"
    r" (?P<unreadable>[\d,]+) unreadable"
)


def position_of(result: subprocess.CompletedProcess) -> str:
    """The log position `cohortflow track` printed."""
    assert "position=" in result.stdout, result.stdout + result.stderr
    return result.stdout.split("position=")[1].split()[0]


def summary_of(result: subprocess.CompletedProcess) -> dict[str, int]:
    found = SUMMARY.search(result.stdout)
    assert found, result.stdout + result.stderr
    return {k: int(v.replace(",", "")) for k, v in found.groupdict().items() if k != "file"}


def stored_ids(database_url: str, prefix: str) -> set[str]:
    return {
        e.event_id
        for e in stored_events(database_url)
        if getattr(e, "event_id", "").startswith(prefix)
    }
