"""`cohortflow rebuild` leaves no schema behind: after --check (pass or DIFFERENT), on Ctrl-C
or SIGTERM, and says where and how to drop what it keeps."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid

import psycopg
import pytest

from tests.support.cli import COMMAND, Suite, position_of

pytestmark = pytest.mark.e2e


def schemas(database_url: str, prefix: str) -> set[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (prefix,)
        ).fetchall()
    return {row[0] for row in rows}


def tracked_and_projected(suite: Suite, user: str) -> None:
    """One more event for `user`, folded by the live projector."""
    last = suite.cli("track", user, "App Opened")
    shown = suite.cli("profile", user, "--min-position", position_of(last))
    assert shown.returncode == 0, shown.stderr


def test_rebuild_check_drops_its_schema_and_keep_says_how_to_drop_it(suite: Suite) -> None:
    tag = uuid.uuid4().hex[:8]
    tracked_and_projected(suite, f"r-{tag}")
    before = schemas(suite.database_url, "rebuild_")

    # Default name, --check: identical, and the rebuilt schema is gone afterwards.
    result = suite.cli("rebuild", "--check", **suite_db(suite))
    assert result.returncode == 0, result.stderr
    assert "check: identical:" in result.stdout
    (name,) = re.findall(r"into schema (rebuild_\d+)", result.stdout)
    assert f"dropped schema {name}" in result.stdout
    assert schemas(suite.database_url, "rebuild_") == before

    # --keep keeps it and says where it is and the statement that drops it.
    kept = f"rebuild_keep_{tag}"
    result = suite.cli("rebuild", "--schema", kept, "--check", "--keep", **suite_db(suite))
    assert result.returncode == 0, result.stderr
    drop = f'DROP SCHEMA "{kept}" CASCADE'
    assert f"kept schema {kept} in {suite.database_url}; drop it when done: {drop}" in result.stdout
    assert schemas(suite.database_url, kept) == {kept}

    # A schema that exists is refused, and not dropped: the rebuild did not make it.
    again = suite.cli("rebuild", "--schema", kept, "--check", **suite_db(suite))
    assert again.returncode == 1
    assert again.stderr.startswith(f"error: schema {kept} exists already; name a new one"), (
        again.stderr
    )
    assert schemas(suite.database_url, kept) == {kept}
    with psycopg.connect(suite.database_url, autocommit=True) as conn:
        conn.execute(drop)
    assert schemas(suite.database_url, kept) == set()

    # Without --check or --swap the rebuilt schema is the result: kept, with how to drop it.
    only = f"rebuild_only_{tag}"
    result = suite.cli("rebuild", "--schema", only, **suite_db(suite))
    assert result.returncode == 0, result.stderr
    kept_only = (
        f'kept schema {only} in {suite.database_url}; drop it when done: DROP SCHEMA "{only}"'
    )
    assert kept_only in result.stdout
    assert schemas(suite.database_url, only) == {only}
    with psycopg.connect(suite.database_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{only}" CASCADE')


def test_a_different_check_drops_the_schema_too(suite: Suite) -> None:
    tag = uuid.uuid4().hex[:8]
    user = f"r-{tag}"
    tracked_and_projected(suite, user)
    name = f"rebuild_diff_{tag}"
    with psycopg.connect(suite.database_url, autocommit=True) as conn:
        (original,) = conn.execute(
            "SELECT to_value FROM projector_changes WHERE user_id = %s", (user,)
        ).fetchone()
        conn.execute(
            "UPDATE projector_changes SET to_value = 'tampered' WHERE user_id = %s", (user,)
        )
        try:
            result = suite.cli("rebuild", "--schema", name, "--check", **suite_db(suite))
        finally:
            conn.execute(
                "UPDATE projector_changes SET to_value = %s WHERE user_id = %s", (original, user)
            )
    assert result.returncode == 1
    assert "check: DIFFERENT:" in result.stderr and "live='tampered'" in result.stderr
    assert f"dropped schema {name} (--keep keeps it for inspection)" in result.stderr
    assert schemas(suite.database_url, name) == set()


def _wait_for_lock_wait(database_url: str, application: str, process: subprocess.Popen) -> None:
    """Until a connection of `application` waits for a lock (or the process ends)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        while process.poll() is None:
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = %s AND wait_event_type = 'Lock'",
                (application,),
            ).fetchone()
            if waiting and waiting[0]:
                return
            time.sleep(0.05)
    raise AssertionError(process.communicate()[1])


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_rebuild_stopped_midway_drops_its_partial_schema(
    suite: Suite, stop: signal.Signals
) -> None:
    tag = uuid.uuid4().hex[:8]
    tracked_and_projected(suite, f"r-{tag}")
    name = f"rebuild_stop_{tag}"
    application = f"rebuild-test-{tag}"
    env = {
        **os.environ,
        **suite_db(suite),
        "PGAPPNAME": application,  # to see the rebuild's connections in pg_stat_activity
    }
    # Hold the log still, so the rebuild is midway (its schema made, the log not read) when
    # the signal comes.
    with psycopg.connect(suite.database_url) as holder:
        holder.execute("LOCK TABLE cohortflow_events IN ACCESS EXCLUSIVE MODE")
        process = subprocess.Popen(
            [*COMMAND, "rebuild", "--schema", name, "--check"],
            env=env,
            cwd=suite.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_for_lock_wait(suite.database_url, application, process)
            assert schemas(suite.database_url, name) == {name}
            process.send_signal(stop)
        finally:
            holder.rollback()
        out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert f"error: interrupted; dropped schema {name}" in err
    assert "Traceback" not in err
    assert schemas(suite.database_url, name) == set()


def suite_db(suite: Suite) -> dict[str, str]:
    return {"DATABASE_URL": suite.database_url}
