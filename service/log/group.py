"""Group commit: the appends waiting at one moment are written by one caller, in one
transaction and one fsync (issue 15).

No writer thread: each caller queues its item in its lane and waits. When no batch of the
lane is being written, one waiting caller becomes the writer of everything queued so far
(its own item among them, up to `max_batch`); the others wait for it. While that batch is
committed (the fsync), new callers queue, and the next writer takes them all. Each caller
returns only once the batch that holds its item has committed, with its own result or its
own error; a batch that fails raises to each of its callers, and none of them was answered
before, so nothing acknowledged is lost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(eq=False)
class Pending(Generic[T]):
    """One caller's item; the writer sets `result` or `error`, then `done`."""

    item: T
    result: Any = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class _Lane(Generic[T]):
    queue: list[Pending[T]] = field(default_factory=list)
    writing: bool = False


class GroupCommit(Generic[T]):
    """Batches concurrent calls per lane; `write(batch)` settles every Pending it is given
    (or raises, which fails the whole batch)."""

    def __init__(self, write: Callable[[list[Pending[T]]], None], *, max_batch: int = 64):
        self._write = write
        self.max_batch = max_batch
        self._cv = threading.Condition()
        self._lanes: dict[Hashable, _Lane[T]] = {}
        self.batches = 0  # how many transactions were written (tests, bench)

    def submit(self, lane: Hashable, item: T) -> Any:
        """Queue `item`, wait until the batch that holds it has been written, and return its
        result (or raise its error)."""
        mine = Pending(item)
        with self._cv:
            state = self._lanes.setdefault(lane, _Lane())
            state.queue.append(mine)
            while not mine.done:
                if state.writing:
                    self._cv.wait()
                    continue
                batch = state.queue[: self.max_batch]
                del state.queue[: self.max_batch]
                state.writing = True
                self._cv.release()
                try:
                    self._run(batch)
                finally:
                    self._cv.acquire()
                    state.writing = False
                    self.batches += 1
                    self._cv.notify_all()
        if mine.error is not None:
            raise mine.error
        return mine.result

    def _run(self, batch: list[Pending[T]]) -> None:
        try:
            self._write(batch)
        except BaseException as exc:  # the transaction failed: every caller in it hears why
            for p in batch:
                p.result, p.error = None, exc
        for p in batch:
            p.done = True
