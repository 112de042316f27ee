"""Templates rendered in worker processes, each render under a time and a memory limit.

A campaign's template is a tenant's code. The sandbox bounds single operations, but
only a process bounds a whole render (loops, a long C call, memory). So renders run in
`workers` child processes (services/campaign/render_worker.py), each under an
address-space limit of `memory_mb`, and the decider awaits them without blocking the
event loop: meanwhile other changes are decided, sends go out, calls are answered.

A render over `timeout_s` is stopped by an alarm in the worker; a worker that does not
answer within `timeout_s` + 1 s (stuck in one long C call) is killed and replaced.
Either way that one message fails with `render_timeout`; out of memory, it fails with
`render_too_large`. A template that hit the time or memory limit is *tripped* for
`trip_s`: its renders fail at once with the same reason instead of costing the limit
again, so one tenant's template cannot slow every batch down. Workers inherit none of
the service's settings: no secret is in their environment, should a template ever
escape the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import orjson
import structlog

from services.campaign import metrics
from services.campaign.domain.ports import RenderJob
from services.campaign.domain.templates import (
    DEFAULT_MAX_OUTPUT_CHARS,
    RENDER_ERROR,
    RENDER_TIMEOUT,
    RENDER_TOO_LARGE,
    Rendered,
    Unrendered,
)
from services.campaign.render_worker import READY

_log = structlog.get_logger("campaign.rendering")
_GRACE_S = 1.0
_STARTUP_S = 60.0
# What a worker inherits of the environment: enough to start Python, no secrets.
_WORKER_ENV = ("PATH", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LANG", "LC_ALL", "TZ")
Outcome = Rendered | Unrendered


class RenderWorkerUnavailable(OSError):
    """No worker could be started: a transient failure (the batch is retried later)."""


@dataclass(frozen=True)
class RenderLimits:
    timeout_s: float = 1.0
    max_chars: int = DEFAULT_MAX_OUTPUT_CHARS
    memory_mb: int = 512
    workers: int = 2
    trip_s: float = 300.0


def _outcome(line: bytes) -> Outcome:
    answer = orjson.loads(line)
    if "reason" in answer:
        return Unrendered(str(answer["reason"]), str(answer["detail"]), bool(answer["exhausted"]))
    data = answer["data"]
    return Rendered(str(answer["title"]), str(answer["body"]), {str(k): str(data[k]) for k in data})


class _Worker:
    """One worker process, started when first needed and again after it was stopped."""

    def __init__(self, limits: RenderLimits) -> None:
        self._limits = limits
        self._process: asyncio.subprocess.Process | None = None
        self._ready = False

    async def start(self) -> asyncio.subprocess.Process:
        """The process, started if need be (it is ready once it has said so: see run)."""
        if self._process is None or self._process.returncode is not None:
            self._ready = False
            limits = self._limits
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.campaign.render_worker",
                str(limits.timeout_s),
                str(limits.max_chars),
                str(limits.memory_mb),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                # An answer line holds a message of max_chars, JSON-escaped.
                limit=(limits.max_chars * 20) + (1 << 20),
                env={k: v for k, v in os.environ.items() if k in _WORKER_ENV},
            )
        return self._process

    async def run(self, jobs: Sequence[RenderJob]) -> list[Outcome]:
        """The outcomes of the jobs, in order, or of the first ones only: when the worker
        gets stuck (no answer in time) or dies, the last outcome is that job's failure,
        the worker is stopped, and the next run starts another."""
        process = await self.start()
        assert process.stdin is not None and process.stdout is not None
        if not self._ready:  # its start-up (imports) does not count against any render
            said = await asyncio.wait_for(process.stdout.readline(), _STARTUP_S)
            if said != READY:
                await self.stop()
                msg = f"the render worker did not start: {said[:200]!r}"
                raise RenderWorkerUnavailable(msg)
            self._ready = True
        batch = [
            (
                j.key,
                j.template.title,
                j.template.body,
                dict(j.template.data),
                j.template.suppress_on_missing,
                j.context,
            )
            for j in jobs
        ]
        process.stdin.write(orjson.dumps(batch, default=str) + b"\n")
        await process.stdin.drain()
        out: list[Outcome] = []
        patience = self._limits.timeout_s + _GRACE_S
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(patience) as deadline:
                for _ in jobs:
                    line = await process.stdout.readline()
                    if not line:
                        code = await process.wait()
                        self._process = None
                        ended = f"the render worker ended ({code})"
                        out.append(Unrendered(RENDER_ERROR, ended, True))
                        break
                    out.append(_outcome(line))
                    deadline.reschedule(loop.time() + patience)
        except TimeoutError:
            await self.stop()
            metrics.RENDER_WORKERS_KILLED.inc()
            out.append(Unrendered(RENDER_TIMEOUT, f"over {self._limits.timeout_s:g} s", True))
        if any(
            o.reason == RENDER_TOO_LARGE and o.exhausted for o in out if isinstance(o, Unrendered)
        ):
            await self.stop()  # memory it held may not go back to the system: start afresh
        return out

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    async def close(self) -> None:
        process = self._process
        if process is not None and process.stdin is not None and process.returncode is None:
            process.stdin.close()  # end of input: the worker returns
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 2)
        await self.stop()


class RenderPool:
    """The campaign service's Renderer: a few worker processes."""

    def __init__(self, limits: RenderLimits) -> None:
        self._limits = limits
        self._workers = [_Worker(limits) for _ in range(max(1, limits.workers))]
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        for worker in self._workers:
            self._idle.put_nowait(worker)
        # template key -> (monotonic time it stays tripped until, its failure)
        self._tripped: dict[str, tuple[float, Unrendered]] = {}

    async def start(self) -> None:
        """Start one worker now (its imports take a moment), the others when needed."""
        await self._workers[0].start()

    async def render(self, jobs: Sequence[RenderJob]) -> list[Outcome]:
        results: list[Outcome | None] = [self._trip_of(job.key) for job in jobs]
        waiting = [i for i, found in enumerate(results) if found is None]
        if waiting:
            worker = await self._idle.get()
            try:
                while waiting:
                    waiting = await self._run(worker, jobs, waiting, results)
            except BaseException:
                await worker.stop()  # it may still be answering: never reuse it half-read
                raise
            finally:
                self._idle.put_nowait(worker)
        return [r for r in results if r is not None]

    async def _run(
        self,
        worker: _Worker,
        jobs: Sequence[RenderJob],
        waiting: list[int],
        results: list[Outcome | None],
    ) -> list[int]:
        """Render the waiting jobs; those still waiting if the worker had to be stopped."""
        answers = await worker.run([jobs[i] for i in waiting])
        for i, answer in zip(waiting, answers, strict=False):
            results[i] = answer
            if isinstance(answer, Unrendered) and answer.exhausted:
                if jobs[i].key not in self._tripped:
                    _log.warning("template tripped", template=jobs[i].key, reason=answer.reason)
                self._trip(jobs[i].key, answer)
        rest = waiting[len(answers) :]
        for i in rest:
            results[i] = self._trip_of(jobs[i].key)
        return [i for i in rest if results[i] is None]

    def _trip(self, key: str, failure: Unrendered) -> Unrendered:
        self._tripped[key] = (time.monotonic() + self._limits.trip_s, failure)
        return failure

    def _trip_of(self, key: str) -> Unrendered | None:
        found = self._tripped.get(key)
        if found is None:
            return None
        until, failure = found
        if until <= time.monotonic():
            del self._tripped[key]
            return None
        return replace(failure, detail=f"{failure.detail} (recently; not tried again yet)")

    async def close(self) -> None:
        for worker in self._workers:
            await worker.close()
