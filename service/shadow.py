"""Shadow evaluation: a candidate spec judges live traffic off the request path."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import partial

import anyio
from pydantic import BaseModel

from service.engine import Engine
from service.specs.loader import Spec

log = logging.getLogger("arbiter.shadow")


@dataclass
class ShadowJob:
    kind: str
    case: BaseModel
    live_id: str
    spec: Spec


class ShadowRunner:
    """A bounded queue and a few workers; a full queue drops work, never the live request."""

    def __init__(self, *, engine: Engine, queue_size: int, concurrency: int):
        self.engine = engine
        self.queue: asyncio.Queue[ShadowJob] = asyncio.Queue(maxsize=queue_size)
        self.concurrency = concurrency
        self.done = 0
        self.dropped = 0
        self.failed = 0
        self._workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._work(), name=f"shadow-{i}") for i in range(self.concurrency)
        ]

    async def stop(self) -> None:
        for w in self._workers:
            w.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)

    def submit(self, *, kind: str, case: BaseModel, live_id: str, spec: Spec) -> bool:
        """Queue a shadow evaluation; False (and counted) when the queue is full."""
        try:
            self.queue.put_nowait(ShadowJob(kind, case, live_id, spec))
            return True
        except asyncio.QueueFull:
            self.dropped += 1
            return False

    async def _work(self) -> None:
        while True:
            job = await self.queue.get()
            try:
                k = self.engine.kind(job.kind)
                row = await self.engine.evaluate(
                    k, job.case, job.spec, caller="shadow", shadow_of=job.live_id
                )
                await anyio.to_thread.run_sync(partial(self.engine.log.append, row=row))
                self.done += 1
            except Exception:
                self.failed += 1
                log.exception("shadow evaluation of %s failed", job.live_id)
            finally:
                self.queue.task_done()

    async def drain(self) -> None:
        """Wait until every queued job is done (tests, shutdown)."""
        await self.queue.join()
