"""A full waiting room: 200 jobs (ENGINE_QUEUE_MAX's default) from many members in both lanes. Every waiting
job's status line asks for its position each QUEUE_UPDATE_INTERVAL, so one round of those questions must not
rebuild the run order once per job: counted in operations, not timed."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from engine.cluster.waiting import ClusterJob, WaitingRoom
from engine.queue import FairQueue, QueuedJob
from engine.requests import DraftRequest, FinalRequest

from .test_queue import Clock, drain

N = 200


def user_of(i: int) -> str:
    return "heavy" if i % 5 == 0 else f"u{i % 29}"


def lane_of(i: int) -> str:
    return "final" if i % 4 == 3 else "draft"


def full_queue(clock: Clock) -> FairQueue:
    """200 jobs: 30 members, some with many jobs (one with 40), drafts and finals, arriving a second apart."""
    q = FairQueue(N, final_after_s=20, clock=clock)
    for i in range(N):
        q.push(QueuedJob(f"j{i}", user_of(i), lane_of(i), request=None, enqueued_at=float(i)))
    assert len(q) == N
    return q


@pytest.fixture
def counted(monkeypatch):
    """How many times the queue decided which lane goes next (one per job served, real or predicted)."""
    calls = Counter()
    decide = FairQueue._next_lane

    def counting(self, *args, **kwargs):
        calls["next_lane"] += 1
        return decide(self, *args, **kwargs)

    monkeypatch.setattr(FairQueue, "_next_lane", counting)
    return calls


def test_a_full_queue_runs_fairly_in_the_order_it_shows():
    clock = Clock()
    clock.now = 150.0  # the finals that came first have waited past final_after_s, the later ones not
    q = full_queue(clock)
    shown = [j.job_id for j in q.order()]
    assert sorted(shown) == sorted(f"j{i}" for i in range(N))
    served = drain(q)
    assert served == shown
    index = {job: n for n, job in enumerate(served)}
    # the finals that waited past final_after_s go before any draft
    first_draft = min(index[f"j{i}"] for i in range(N) if lane_of(i) == "draft")
    assert all(index[f"j{i}"] < first_draft for i in range(N) if lane_of(i) == "final" and 150.0 - i >= 20)
    # members take turns: the heavy member's second draft comes after every other member's first
    drafts_of: dict[str, list[int]] = {}
    for job in served:
        i = int(job[1:])
        if lane_of(i) == "draft":
            drafts_of.setdefault(user_of(i), []).append(index[job])
    assert len(drafts_of["heavy"]) == 30
    assert all(drafts_of["heavy"][1] > firsts[0] for user, firsts in drafts_of.items() if user != "heavy")


def test_200_position_questions_build_the_order_once(counted):
    clock = Clock()
    q = full_queue(clock)
    for _ in range(N):  # one round of status lines
        q.order()
    assert counted["next_lane"] <= 2 * N  # once, not 200 times (40,000)
    before = [j.job_id for j in q.order()]
    q.push(QueuedJob("late", "newcomer", "draft", request=None, enqueued_at=300.0))
    assert "late" in [j.job_id for j in q.order()]  # a change is seen at once
    q.remove("late")
    assert [j.job_id for j in q.order()] == before
    clock.now = 1000.0  # every final is now overdue: they go first, with no push or pop in between
    lanes = [j.lane for j in q.order()]
    assert lanes == ["final"] * 50 + ["draft"] * 150


def test_the_cluster_waiting_room_answers_200_positions_from_one_order(counted):
    async def scenario() -> None:
        room = WaitingRoom(N, final_after_s=20)
        loop = asyncio.get_running_loop()
        jobs = []
        for i in range(N):
            request = FinalRequest(f"p{i}", i) if lane_of(i) == "final" else DraftRequest(f"p{i}", i)
            job = ClusterJob(f"j{i}", user_of(i), request, loop.create_future(), None)
            room.push(job)
            jobs.append(job)
        orders = [room.in_order() for _ in range(N)]
        assert all(o == orders[0] for o in orders) and len(orders[0]) == N
        positions = {job.job_id: n for n, job in enumerate(orders[0], start=1)}
        assert sorted(positions.values()) == list(range(1, N + 1))
        assert counted["next_lane"] <= 2 * N

    asyncio.run(scenario())


def full_requests() -> list[tuple[str, str, DraftRequest | FinalRequest]]:
    return [
        (f"j{i}", user_of(i), FinalRequest(f"p{i}", i) if lane_of(i) == "final" else DraftRequest(f"p{i}", i))
        for i in range(N)
    ]


def test_a_round_of_200_position_questions_to_the_local_engine_estimates_each_job_once(tmp_path, monkeypatch):
    from engine.estimates import RunRates
    from engine.queue import lane_of as lane_of_request
    from engine.worker import Engine

    from .conftest import tiny_settings

    engine = Engine(tiny_settings(tmp_path))  # not started: the queue alone, as submit fills it
    engine._rates.guess(on_gpu=False)
    for job_id, user, request in full_requests():
        engine._queue.push(QueuedJob(job_id, user, lane_of_request(request), request))
    expected = {info.job_id: info for info in engine.queue_snapshot()}
    estimates = Counter()
    estimate = RunRates.estimate

    def counting(self, *args, **kwargs):
        estimates["estimate"] += 1
        return estimate(self, *args, **kwargs)

    monkeypatch.setattr(RunRates, "estimate", counting)
    for _ in range(2):  # two rounds of status lines: one question per waiting job
        answers = {f"j{i}": engine.queue_info(f"j{i}") for i in range(N)}
    assert estimates["estimate"] <= N  # once per job, not once per job per question (40,000 a round)
    assert answers == expected  # the same positions and ETAs as the whole snapshot shows
    engine._queue.remove("j0")  # a change is seen at once
    after = {info.job_id: info for info in engine.queue_snapshot()}
    assert engine.queue_info("j0").state == "unknown"
    assert {f"j{i}": engine.queue_info(f"j{i}") for i in range(1, N)} == after


def test_a_round_of_200_position_questions_to_the_cluster_client_reads_the_order_once(monkeypatch):
    from engine.cluster.client import ClusterEngine

    async def scenario() -> None:
        engine = ClusterEngine("http://127.0.0.1:9", None)  # never started: the waiting room alone
        engine._waiting.capacity = {"draft_images": 8, "final": 2}
        loop = asyncio.get_running_loop()
        for job_id, user, request in full_requests():
            engine._waiting.push(ClusterJob(job_id, user, request, loop.create_future(), None))
        expected = {info.job_id: info for info in await engine.queue_snapshot()}
        orders = Counter()
        in_order = WaitingRoom.in_order

        def counting(self):
            orders["in_order"] += 1
            return in_order(self)

        monkeypatch.setattr(WaitingRoom, "in_order", counting)
        for _ in range(2):
            answers = {f"j{i}": await engine.queue_info(f"j{i}") for i in range(N)}
        assert orders["in_order"] <= 1  # one pass over the queue, not one per question
        assert answers == expected
        first = engine._waiting.in_order()[0]
        engine._waiting.remove(first)  # a change is seen at once
        after = {info.job_id: info for info in await engine.queue_snapshot()}
        assert (await engine.queue_info(first.job_id)).state == "unknown"
        assert {i.job_id: await engine.queue_info(i.job_id) for i in after.values()} == after

    asyncio.run(scenario())
