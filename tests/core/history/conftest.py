"""The history tests' database: a nested path (the store creates the folders) and a clock that ticks."""

from __future__ import annotations

from pathlib import Path

import pytest


class FakeClock:
    """Unix seconds that move one second forward on every read, so creation order is unambiguous."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "nested" / "history.db"


@pytest.fixture
def store_clock() -> FakeClock:
    return FakeClock()
