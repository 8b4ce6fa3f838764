"""Fixtures of the job service's tests: a real store on a temporary file, the fake engine, a service."""

from __future__ import annotations

import pytest

from core.inputs import InputStore
from tests.core.doubles import FakeEngine
from tests.core.jobs.support import make_service


class DirectMessages:
    """Records what the service DMs; ``open=False`` behaves like a member with closed DMs."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str, list[tuple[str, bytes]]]] = []
        self.open = True

    async def __call__(self, client, user_id, content, files) -> bool:
        if not self.open:
            return False
        self.sent.append((user_id, content, list(files)))
        return True


@pytest.fixture
def engine(tmp_path):
    return FakeEngine(str(tmp_path / "history.sqlite3"))


@pytest.fixture
def inputs(tmp_path):
    return InputStore(tmp_path / "data")


@pytest.fixture
def dms():
    return DirectMessages()


@pytest.fixture
async def service(store, engine, inputs, dms):
    service = make_service(store, engine, inputs=inputs, direct_message=dms)
    yield service
    await service.shutdown(0.0)
