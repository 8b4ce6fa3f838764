"""The engine double keeps to the real Engine's interface, so tests written against it stay honest."""

from __future__ import annotations

import inspect

import pytest

from engine import worker
from tests.core.doubles import FakeEngine

CONTRACT = ("start", "submit", "cancel", "queue_info", "queue_snapshot", "health", "shutdown")


@pytest.mark.parametrize("name", CONTRACT)
def test_fake_engine_methods_match_the_real_ones(name):
    real = inspect.signature(getattr(worker.Engine, name))
    fake = inspect.signature(getattr(FakeEngine, name))
    assert [(p.name, p.kind) for p in fake.parameters.values()] == [(p.name, p.kind) for p in real.parameters.values()]
