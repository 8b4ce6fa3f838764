"""The cluster tests' engine: a started ClusterEngine on the session's cluster (``cluster`` in tests/conftest.py)."""

from __future__ import annotations

import pytest

from engine.cluster.client import ClusterEngine


@pytest.fixture
async def engine(cluster):
    engine = ClusterEngine(cluster.url, cluster.token)
    await engine.start()
    yield engine
    await engine.close(timeout=5)
