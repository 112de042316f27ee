"""`cohortflow segments ...` and `watch` against ingest and the projector."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.support.cli import Suite, position_of

pytestmark = pytest.mark.e2e


def segment_file(
    path: Path, segment_id: str, threshold: int, window: str = "30d", event: str = "Order"
) -> Path:
    """A segment of users who ordered for `threshold` or more (one event name per test, as
    other tests of the package share the app)."""
    path.write_text(
        f"""segment_id: {segment_id}
display_name: Big spenders
description: Ordered for {threshold} or more in the last {window}.
condition:
  events:
    name: {event}
    window: {window}
    aggregate: sum
    property: revenue
    op: ">="
    value: {threshold}
"""
    )
    return path


def test_define_preview_diff_apply_and_read_a_segment(suite: Suite) -> None:
    tag = uuid.uuid4().hex[:8]
    big, small = f"big-{tag}", f"small-{tag}"
    segment_id, order = f"spenders-{tag}", f"Order {tag}"
    assert suite.cli("track", big, order, "-p", "revenue=150").returncode == 0
    last = suite.cli("track", small, order, "-p", "revenue=40")
    position = position_of(last)
    draft = segment_file(suite.workdir / f"{tag}.yaml", segment_id, 100, event=order)

    preview = suite.cli(
        "segments", "preview", "-f", str(draft), "--min-position", position, "--json"
    )
    assert preview.returncode == 0, preview.stderr
    previewed = json.loads(preview.stdout)
    assert previewed["sample_user_ids"] == [big]
    assert previewed["entering_sample"] == [big]

    applied = suite.cli("segments", "apply", "-f", str(draft))
    assert applied.returncode == 0, applied.stderr
    assert f"{segment_id}: created, v1" in applied.stdout
    assert f"{segment_id}: v1 live, 1 members" in applied.stdout
    again = suite.cli("segments", "apply", "-f", str(draft))
    assert again.stdout.strip() == f"{segment_id}: unchanged (v1)"

    members = suite.cli("segments", "members", segment_id)
    assert members.returncode == 0, members.stderr
    assert big in members.stdout and small not in members.stdout
    assert suite.cli("segments", "check", segment_id, big).stdout.startswith(
        f"{big} is in {segment_id} (v1) since "
    )
    assert suite.cli("segments", "check", segment_id, small).stdout.strip() == (
        f"{small} is not in {segment_id}"
    )

    lowered = segment_file(draft, segment_id, 30, event=order)
    diff = suite.cli("segments", "diff", "-f", str(lowered))
    assert diff.returncode == 0, diff.stderr
    changed = [line for line in diff.stdout.splitlines() if line[:1] in "+-"]
    assert "-  value: 100" in changed and "+  value: 30" in changed, diff.stdout
    assert not any("window" in line for line in changed), diff.stdout
    assert f"1 would enter ({small})" in diff.stdout and "0 would exit" in diff.stdout

    updated = suite.cli("segments", "apply", "-f", str(lowered))
    assert f"{segment_id}: updated, v2" in updated.stdout, updated.stderr
    assert f"{segment_id}: v2 live, 2 members" in updated.stdout

    shown = suite.cli("segments", "get", segment_id)
    assert f"{segment_id} v2 (active; live v2, 2 members)" in shown.stdout, shown.stdout
    assert "value: 30" in shown.stdout
    listed = suite.cli("segments", "list")
    assert segment_id in listed.stdout

    history = suite.cli("segments", "history", small, "--segment", segment_id)
    assert history.returncode == 0, history.stderr
    assert "v2" in history.stdout and "entered" in history.stdout

    watched = suite.cli("watch", "--segment", segment_id, "--max", "2")
    assert watched.returncode == 0, watched.stderr
    lines = watched.stdout.strip().splitlines()
    assert len(lines) == 2
    assert {line.split()[1] for line in lines} == {big, small}
    assert all(f"entered {segment_id}" in line for line in lines)

    restored = suite.cli("segments", "restore", segment_id, "1")
    assert restored.returncode == 0, restored.stderr
    assert "v3" in restored.stdout


def test_a_bad_segment_file_names_the_file_and_the_field(suite: Suite) -> None:
    tag = uuid.uuid4().hex[:8]
    bad = segment_file(suite.workdir / f"bad-{tag}.yaml", f"bad-{tag}", 10, window="3x")
    for command in ("apply", "preview", "diff"):
        result = suite.cli("segments", command, "-f", str(bad))
        assert result.returncode == 1
        line = result.stderr.strip()
        assert line.startswith(f"error: {bad}: segment.condition.events.window: "), line
        assert "3x" in line
    missing = suite.cli("segments", "get", f"none-{tag}")
    assert missing.returncode == 1
    assert "NOT_FOUND" in missing.stderr
