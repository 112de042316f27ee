"""A template render worker: `python -m services.campaign.render_worker TIMEOUT_S MAX_CHARS MB`.

Started by adapters/rendering.py. Says `ready` once started, then reads one JSON line per
batch from stdin,
`[[key, title, body, data, suppress_on_missing, context], ...]`, and answers one JSON
line per job on stdout, in order: `{"title", "body", "data"}` or `{"reason", "detail",
"exhausted"}`. Each render runs under an alarm of TIMEOUT_S seconds, the process under
an address-space limit of MB megabytes. JSON both ways, so the parent never unpickles
what a template produced. A template that ran out of time or memory fails the rest of
its batch at once.
"""

from __future__ import annotations

import resource
import signal
import sys
from typing import Any

import orjson

from services.campaign.domain.templates import (
    RENDER_TIMEOUT,
    RENDER_TOO_LARGE,
    Rendered,
    TemplateParts,
    Unrendered,
    render_outcome,
)

READY = b"ready\n"


class _Alarm(BaseException):
    """Out of time (not an Exception: templates and Jinja2 catch those)."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Alarm


def _render(job: list[Any], timeout_s: float, max_chars: int, mb: int) -> dict[str, Any]:
    _key, title, body, data, strict, context = job
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        try:
            outcome = render_outcome(TemplateParts(title, body, data, strict), context, max_chars)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Alarm:
        outcome = Unrendered(RENDER_TIMEOUT, f"over {timeout_s:g} s", exhausted=True)
    except MemoryError:
        outcome = Unrendered(RENDER_TOO_LARGE, f"over {mb} MB of memory", exhausted=True)
    if isinstance(outcome, Rendered):
        return {"title": outcome.title, "body": outcome.body, "data": outcome.data}
    return {"reason": outcome.reason, "detail": outcome.detail, "exhausted": outcome.exhausted}


def main(argv: list[str]) -> None:
    timeout_s, max_chars, mb = float(argv[0]), int(argv[1]), int(argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGALRM, _on_alarm)
    resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))
    out = sys.stdout.buffer
    out.write(READY)  # imported and limited: the parent's clock for renders starts now
    out.flush()
    for line in sys.stdin.buffer:
        tripped: dict[str, dict[str, Any]] = {}
        for job in orjson.loads(line):
            answer = tripped.get(job[0]) or _render(job, timeout_s, max_chars, mb)
            if answer.get("exhausted"):
                tripped[job[0]] = answer
            out.write(orjson.dumps(answer) + b"\n")
            out.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
