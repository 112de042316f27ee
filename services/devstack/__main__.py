"""python -m services.devstack run: the suite on this machine (what `make run` calls).

python -m services.devstack demo [--var DIR] [OPTIONS]: the same, then `cohortflow demo
OPTIONS` against it (what `make demo` calls).
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from services.devstack.demo import DEMO_VAR, run_demo
from services.devstack.stack import Stack

EXAMPLE = """\
Try it (another terminal, from the repo):
  .venv/bin/python - <<'PY'
  import grpc
  from cohortflow.ingest.v1 import ingest_pb2 as pb, ingest_pb2_grpc as rpc
  stub = rpc.IngestServiceStub(grpc.insecure_channel("{ingest}"))
  print(stub.Track(pb.TrackRequest(event=pb.Event(
      event_id="hello-1", user_id="alice", name="App Opened")),
      metadata=[("authorization", "Bearer {key}")]))
  PY
"""
CURL = """\
Or as Segment's HTTP API (its SDKs: set their host to {http}):
  curl -u {key}: -H 'Content-Type: application/json' {http}/v1/track \\
       -d '{{"userId": "alice", "event": "App Opened", "messageId": "hello-2"}}'
"""


def running_table(addresses: dict[str, str], notes: dict[str, str]) -> str:
    """One line per address, with where its setting came from in parentheses."""
    width = max(len(k) for k in addresses)
    shown = max(len(v) for v in addresses.values())
    lines = []
    for name, address in addresses.items():
        note = f"  ({notes[name]})" if name in notes else ""
        lines.append(f"  {name:<{width}}  {address:<{shown}}{note}".rstrip())
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["demo"]:
        rest = args[1:]
        var = DEMO_VAR
        if "--var" in rest:
            at = rest.index("--var")
            if at + 1 == len(rest):
                print("--var needs a folder", file=sys.stderr)
                return 2
            var, rest = Path(rest[at + 1]), rest[:at] + rest[at + 2 :]
        return run_demo(var, rest)
    if args[:1] != ["run"]:
        print("usage: python -m services.devstack run [--var DIR]", file=sys.stderr)
        print("       python -m services.devstack demo [--var DIR] [OPTIONS]", file=sys.stderr)
        return 2
    var = Path(args[args.index("--var") + 1]) if "--var" in args else Path("var")
    stack = Stack(var)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        addresses = stack.start()
    except Exception as error:
        print(f"cohortflow: could not start: {error}", file=sys.stderr)
        stack.stop()
        return 1
    print("\ncohortflow is running:")
    print(running_table(addresses, stack.notes))
    key = addresses["api key"].split()[0]
    print("\n" + EXAMPLE.format(ingest=addresses["ingest"], key=key))
    if addresses.get("ingest http", "off") != "off":
        print(CURL.format(http=addresses["ingest http"].removesuffix("/v1/"), key=key))
    apps = addresses["apps"]
    print(f"Ctrl-C stops everything; data stays in {var}/ (apps: {apps}).\n", flush=True)
    dead = stack.watch(stop)
    if dead:
        print(f"cohortflow: {dead} exited unexpectedly; stopping the rest", file=sys.stderr)
    print("stopping...", flush=True)
    stack.stop()
    print("stopped.")
    return 1 if dead else 0


if __name__ == "__main__":
    sys.exit(main())
