"""Group commit in the log's append path (issue 15): the appends waiting at one moment share
one transaction and one fsync, each caller is answered only once its own record is
durable, a failed batch fails each of its callers and writes nothing, and one caller's
conflict does not fail the others. SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from service.errors import Conflict, StoreUnavailable
from service.log.decisions import DecisionLog
from service.log.group import GroupCommit, Pending
from service.log.models import DecisionRow, utcnow
from service.log.stores import Stores, open_stores


def row(n: int, *, order: str | None = None, supersedes: str | None = None) -> DecisionRow:
    return DecisionRow(
        id=f"dec_{n:026d}",
        kind="returns",
        created_at=utcnow(),
        order_id=order or f"ORD-{n}",
        outcome="approve",
        source="review" if supersedes else "rules",
        needs_review=False,
        case={"n": n},
        verdict={"outcome": "approve"},
        llm_verdict=None,  # set, as the engine does (an unset JSON column reads back unset)
        prompt=None,
        checks=[],
        review_reasons=[],
        cited_clauses=["R1"],
        rationale="r",
        confidence=1.0,
        spec_name="returns",
        spec_version="1",
        spec_sha256="0" * 64,
        guardrails_version="1",
        attempts=[],
        usage={},
        latency_ms={},
        supersedes=supersedes,
        prev_hash="",
        hash="",
    )


def held_first_batch(group: GroupCommit[Any], waiting: int) -> Callable[[], None]:
    """Make the first batch wait until `waiting` more callers have queued behind it (so the
    second batch holds all of them, whatever the machine's speed); returns the release."""
    write, first, gate = group._write, threading.Event(), threading.Event()

    def gated(batch: list[Pending[Any]]) -> None:
        if not first.is_set():
            first.set()
            gate.wait(timeout=30)
        write(batch)

    group._write = gated

    def release() -> None:
        assert first.wait(timeout=30)
        deadline = time.monotonic() + 30
        while sum(len(lane.queue) for lane in group._lanes.values()) < waiting:
            assert time.monotonic() < deadline, "callers did not queue"
            time.sleep(0.01)
        gate.set()

    return release


# --- the batcher alone ----------------------------------------------------------------


def test_waiting_calls_share_one_write_and_each_gets_its_own_result() -> None:
    batches: list[list[int]] = []

    def write(batch: list[Pending[int]]) -> None:
        batches.append([p.item for p in batch])
        for p in batch:
            p.result = p.item * 10

    group: GroupCommit[int] = GroupCommit(write)
    release = held_first_batch(group, waiting=9)
    with ThreadPoolExecutor(max_workers=10) as pool:
        first = pool.submit(group.submit, "lane", 0)
        futures = [first]
        while not group._lanes or not group._lanes["lane"].writing:
            time.sleep(0.01)
        futures += [pool.submit(group.submit, "lane", i) for i in range(1, 10)]
        release()
        results = [f.result(timeout=30) for f in futures]
    assert results == [i * 10 for i in range(10)]
    assert batches[0] == [0] and sorted(batches[1]) == list(range(1, 10)) and len(batches) == 2


def test_a_failed_write_fails_every_caller_in_it_and_the_next_batch_goes_on() -> None:
    calls = 0

    def write(batch: list[Pending[int]]) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("disk full")
        for p in batch:
            p.result = p.item

    group: GroupCommit[int] = GroupCommit(write)
    release = held_first_batch(group, waiting=4)
    with ThreadPoolExecutor(max_workers=5) as pool:
        first = pool.submit(group.submit, "lane", 0)
        while not group._lanes or not group._lanes["lane"].writing:
            time.sleep(0.01)
        failing = [pool.submit(group.submit, "lane", i) for i in range(1, 5)]
        release()
        assert first.result(timeout=30) == 0
        for f in failing:
            with pytest.raises(OSError, match="disk full"):
                f.result(timeout=30)
    assert group.submit("lane", 7) == 7  # the lane is free again


def test_lanes_do_not_wait_for_each_other() -> None:
    def write(batch: list[Pending[str]]) -> None:
        for p in batch:
            p.result = p.item

    group: GroupCommit[str] = GroupCommit(write)
    release = held_first_batch(group, waiting=0)
    with ThreadPoolExecutor(max_workers=2) as pool:
        held = pool.submit(group.submit, 1, "a")
        while not group._lanes or not group._lanes[1].writing:
            time.sleep(0.01)
        assert group.submit(2, "b") == "b"  # lane 2 is written while lane 1 is held
        release()
        assert held.result(timeout=30) == "a"


# --- the decision log -----------------------------------------------------------------


@pytest.fixture
def stores(db_url: str) -> Iterator[Stores]:
    s = open_stores(db_url)
    yield s
    s.close()


def appended_together(log: DecisionLog, rows: list[DecisionRow]) -> list[Future[DecisionRow]]:
    """Append rows[0], hold its batch until the others have queued, then let all go."""
    release = held_first_batch(log._group, waiting=len(rows) - 1)
    pool = ThreadPoolExecutor(max_workers=len(rows))
    futures = [pool.submit(log.append, row=rows[0])]
    while not any(lane.writing for lane in log._group._lanes.values()):
        time.sleep(0.01)
    futures += [pool.submit(log.append, row=r) for r in rows[1:]]
    release()
    for f in futures:
        f.exception(timeout=60)
    pool.shutdown()
    return futures


def test_appends_waiting_together_are_one_transaction_and_one_chain(stores: Stores) -> None:
    log = stores.log
    before = log._group.batches
    futures = appended_together(log, [row(i) for i in range(12)])
    written = [f.result() for f in futures]
    assert log._group.batches - before == 2  # the held one, then the eleven that waited
    assert len({r.seq for r in written}) == 12
    report = log.verify()
    assert report.ok and report.checked == 12, report.as_dict()
    stored = {r.id: r.hash for r in log.iter_rows()}
    assert all(stored[r.id] == r.hash for r in written)  # each answer is what is stored


def test_a_failed_batch_is_503_for_each_caller_and_writes_none(stores: Stores) -> None:
    log = stores.log
    rows = [row(i) for i in range(6)]
    rows[4] = row(2)  # the same id twice in one batch: the insert fails, the batch rolls back
    futures = appended_together(log, rows)
    assert futures[0].result().seq is not None  # the held first batch was written alone
    for f in futures[1:]:
        err = f.exception()
        assert isinstance(err, StoreUnavailable), err
        assert "no decision was made" in err.message
    assert log.count() == 1
    assert log.verify().ok
    assert log.append(row=row(9)).seq is not None  # the log goes on


def test_one_callers_conflict_does_not_fail_the_others(stores: Stores) -> None:
    log = stores.log
    first = log.append(row=row(1, order="ORD-X"))
    reviews = [row(10 + i, order="ORD-X", supersedes=first.id) for i in range(2)]
    others = [row(20 + i) for i in range(3)]
    futures = appended_together(log, [row(30), *reviews, *others])
    outcomes = [f.exception() for f in futures]
    conflicts = [e for e in outcomes if isinstance(e, Conflict)]
    assert len(conflicts) == 1 and "already been reviewed" in conflicts[0].message
    assert sum(e is None for e in outcomes) == 5
    report = log.verify()
    assert report.ok and report.checked == 6
