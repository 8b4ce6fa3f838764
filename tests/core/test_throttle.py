"""Per-user throttles: a member gets a few, then nothing until the window passes; others are not affected."""

from __future__ import annotations

import pytest

from core.throttle import UserThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_user_gets_count_per_window_and_others_are_independent():
    clock = Clock()
    throttle = UserThrottle(3, 60.0, clock=clock)
    assert [throttle.allow(1) for _ in range(5)] == [True, True, True, False, False]
    assert throttle.allow(2)
    clock.now += 59.0
    assert not throttle.allow(1)
    clock.now += 1.0
    assert throttle.allow(1)


def test_users_whose_window_passed_are_forgotten():
    clock = Clock()
    throttle = UserThrottle(1, 10.0, clock=clock)
    for user in range(1000):
        throttle.allow(user)
    assert len(throttle) == 1000
    clock.now += 11.0
    throttle.allow(5000)
    assert len(throttle) == 1


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        UserThrottle(0, 1.0)
    with pytest.raises(ValueError):
        UserThrottle(1, 0.0)
