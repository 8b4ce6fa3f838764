"""Lanes and fairness of the waiting room, without a GPU."""

from __future__ import annotations

from engine.queue import FairQueue, QueuedJob


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def job(job_id: str, user: str, lane: str = "draft", at: float = 0.0) -> QueuedJob:
    return QueuedJob(job_id, user, lane, request=None, enqueued_at=at)


def drain(q: FairQueue) -> list[str]:
    out = []
    while (j := q.pop()) is not None:
        out.append(j.job_id)
    return out


def test_users_take_turns():
    q = FairQueue(100, clock=Clock())
    for i in range(5):
        q.push(job(f"a{i}", "alice"))
    q.push(job("b0", "bob"))
    q.push(job("c0", "carol"))
    q.push(job("b1", "bob"))
    assert drain(q) == ["a0", "b0", "c0", "a1", "b1", "a2", "a3", "a4"]


def test_drafts_go_before_finals_until_a_final_waited_too_long():
    clock = Clock()
    q = FairQueue(100, final_after_s=20, clock=clock)
    q.push(job("f0", "alice", "final", at=0.0))
    q.push(job("d0", "bob", "draft", at=0.0))
    q.push(job("d1", "carol", "draft", at=0.0))
    assert q.pop().job_id == "d0"
    clock.now = 25.0  # the final has waited longer than final_after_s
    assert q.pop().job_id == "f0"
    assert q.pop().job_id == "d1"


def test_order_predicts_pops_without_changing_the_queue():
    q = FairQueue(100, clock=Clock())
    for j in (job("a0", "a"), job("a1", "a"), job("b0", "b"), job("f", "c", "final")):
        q.push(j)
    predicted = [j.job_id for j in q.order()]
    assert len(q) == 4
    assert predicted == drain(q) == ["a0", "b0", "a1", "f"]


def test_remove_and_take_matching():
    q = FairQueue(100, clock=Clock())
    for j in (job("a0", "a"), job("a1", "a"), job("b0", "b"), job("b1", "b")):
        q.push(j)
    assert q.remove("a0").job_id == "a0"
    assert q.remove("missing") is None
    taken = q.take_matching(lambda j: j.job_id != "b0", limit=5)
    assert [j.job_id for j in taken] == ["a1", "b1"]
    assert drain(q) == ["b0"]
    assert len(q) == 0
