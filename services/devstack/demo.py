"""`make demo`: the suite as `make run` starts it, then `cohortflow demo` against it.

The services log to `<var>/services.log` (the terminal is the dashboard's); the
projector folds events up to 400 days late into lifecycle states, so the simulated
history (30 days by default) moves users through every state. Ctrl-C stops the demo,
then everything else; the data stays under `var/demo/` for the next run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from services.devstack.stack import DEV_APP_ID, Stack

DEMO_VAR = Path("var") / "demo"
# The simulator sends history from --days ago; the default policy folds only the last
# 7 days of it into lifecycle states (see README, Simulator).
DEMO_POLICIES = {"*": {"lifecycle": {"late_limit_days": 400}}}
_STOP_GRACE_S = 20.0


def demo_env() -> dict[str, str]:
    """Extra environment of the demo's services (what the user set wins)."""
    if "PROJECTOR_POLICIES" in os.environ or "PROJECTOR_POLICIES_FILE" in os.environ:
        return {}
    return {"PROJECTOR_POLICIES": json.dumps(DEMO_POLICIES)}


def demo_command(addresses: dict[str, str], key: str, args: list[str]) -> list[str]:
    """`cohortflow demo ARGS` aimed at the stack's services."""
    return [
        sys.executable,
        "-m",
        "services.cli",
        "--ingest",
        addresses["ingest"],
        "--projector",
        addresses["projector"],
        "--campaign",
        addresses["campaign"],
        "--key",
        key,
        "demo",
        *args,
    ]


def _follow(stack: Stack, demo: subprocess.Popen, stopping: threading.Event) -> str | None:
    """Wait for the demo to end; the name of a service that died meanwhile, if any.

    Ctrl-C reaches the demo from the terminal itself; a demo that has not ended
    `_STOP_GRACE_S` after `stopping` was set is killed."""
    asked_at: float | None = None
    while True:
        try:
            demo.wait(0.5)
            return None
        except subprocess.TimeoutExpired:
            pass
        dead = next((n for n, p in stack.children.items() if p.poll() is not None), None)
        if dead:
            demo.terminate()
            try:
                demo.wait(_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()
            return dead
        if stopping.is_set() and asked_at is None:
            asked_at = time.monotonic()
        if asked_at is not None and time.monotonic() - asked_at > _STOP_GRACE_S:
            demo.kill()


def run_demo(var: Path, args: list[str]) -> int:
    """Start the stack under `var`, run the demo in the foreground, stop everything."""
    var.mkdir(parents=True, exist_ok=True)
    log_path = var / "services.log"
    stopping = threading.Event()
    demo: subprocess.Popen | None = None

    def terminated(*_: object) -> None:
        stopping.set()
        if demo is not None and demo.poll() is None:
            demo.terminate()  # the demo stops as on Ctrl-C

    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGTERM, terminated)
    print(f"starting cohortflow for the demo (data in {var}/, service logs in {log_path})...")
    with log_path.open("a", encoding="utf-8") as log:
        stack = Stack(var, log=log, env=demo_env())
        try:
            addresses = stack.start()
        except Exception as error:
            print(f"cohortflow: could not start: {error} (see {log_path})", file=sys.stderr)
            stack.stop()
            return 1
        key = addresses["api key"].split()[0]
        print(f"running: ingest {addresses['ingest']}, projector {addresses['projector']},")
        print(f"campaign {addresses['campaign']}, app {DEV_APP_ID!r}\n", flush=True)
        code = 1
        dead: str | None = None
        if not stopping.is_set():
            demo = subprocess.Popen(demo_command(addresses, key, args))
            dead = _follow(stack, demo, stopping)
            code = demo.returncode if demo.returncode >= 0 else 128 - demo.returncode
        if dead:
            print(f"cohortflow: {dead} exited unexpectedly (see {log_path})", file=sys.stderr)
        print("stopping...", flush=True)
        stack.stop()
    print(f"stopped. The data stays in {var}/; `make demo` again goes on from it.")
    return 1 if dead else code
