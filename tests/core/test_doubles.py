"""The engine double keeps to the door (engine.api.ImageEngine), so tests written against it stay honest."""

from __future__ import annotations

import inspect

import pytest

from engine.api import ImageEngine, JobHandle
from engine.local import LocalEngine, LocalJobHandle
from tests.core.doubles import FakeEngine, FakeHandle

DOOR = ("start", "submit", "queue_info", "queue_snapshot", "cancel", "health", "close")


@pytest.mark.parametrize("engine_class", [FakeEngine, LocalEngine])
@pytest.mark.parametrize("name", DOOR)
def test_engine_methods_match_the_door(engine_class, name):
    door = inspect.signature(getattr(ImageEngine, name))
    mine = getattr(engine_class, name)
    assert inspect.iscoroutinefunction(mine), f"{engine_class.__name__}.{name} must be async"
    signature = inspect.signature(mine)
    assert [(p.name, p.kind, p.default) for p in signature.parameters.values()] == [
        (p.name, p.kind, p.default) for p in door.parameters.values()
    ]


@pytest.mark.parametrize("handle_class", [FakeHandle, LocalJobHandle])
def test_handles_have_the_door_methods(handle_class):
    for name in ("result", "cancel"):
        assert inspect.iscoroutinefunction(getattr(handle_class, name)), name
        assert getattr(JobHandle, name)


def test_the_fake_is_an_image_engine():
    assert isinstance(FakeEngine(), ImageEngine)
