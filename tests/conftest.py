"""Fixtures shared by every test folder."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

CLUSTER_TOKEN = "test-token-3f9a"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_cache_dir(request, tmp_path_factory) -> Path:
    """Where the tiny random pipelines live: built once, kept between runs in pytest's cache."""
    from engine.tiny import ensure_tiny_models

    pytest_cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    if pytest_cache is not None:
        cache = Path(pytest_cache.mkdir("tiny-models"))
    else:  # -p no:cacheprovider
        cache = tmp_path_factory.mktemp("tiny-models")
    ensure_tiny_models(cache)
    return cache


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need CUDA; they are skipped where there is none (CI, laptops)."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture
def db_path(tmp_path) -> Path:
    """Where the ``store`` fixture keeps its database: a fresh file of this test."""
    return tmp_path / "history.sqlite3"


@pytest.fixture
def store_clock() -> Callable[[], float]:
    """The clock the ``store`` fixture stamps rows with (unix seconds): the real one unless a folder overrides it."""
    return time.time


@pytest.fixture
async def store(db_path, store_clock):
    """A ``HistoryStore`` on ``db_path`` with the real migrations, closed after the test."""
    from core.history import HistoryStore

    store = await HistoryStore.open(db_path, clock=store_clock)
    yield store
    await store.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    """The session's local Ray cluster with the engine deployed (tiny preset, CPU replicas)."""

    url: str
    token: str
    port: int
    settings: object  # engine.settings.EngineSettings

    def app(self):
        from engine.cluster.serve_app import Scaling, build_app

        return build_app(self.settings, token=self.token, drafts=Scaling(cpus=1), finals=Scaling(cpus=1))

    def redeploy(self) -> None:
        """Start Serve and the application again (after a test stopped it)."""
        from engine.cluster.serve_app import deploy

        deploy(self.app(), port=self.port)


@pytest.fixture(scope="session")
def cluster(tiny_cache_dir) -> Cluster:
    """One local Ray cluster (CPU only, small object store) with the engine deployed, for the whole
    session: tests/cluster and the door's contract suite share it, so Ray starts once. Tests that
    break it (killing a replica, stopping Serve) leave it running again."""
    pytest.importorskip("ray.serve", reason="ray[serve] is not installed (pip install -e '.[ray]')")
    import ray
    from ray import serve

    from engine.cluster.serve_app import deploy
    from engine.settings import EngineSettings

    started = time.monotonic()
    ray.init(
        num_cpus=4,
        num_gpus=0,
        object_store_memory=100 * 2**20,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}},
    )
    # Photo-sized images (engine.detail): the cluster's wire carries real PNG sizes, not tiny noise.
    settings = EngineSettings.for_preset("tiny", cache_dir=tiny_cache_dir, device="cpu", tiny_detail="photo")
    port = free_port()
    c = Cluster("", CLUSTER_TOKEN, port, settings)
    c.url = deploy(c.app(), port=port)
    print(f"cluster up in {time.monotonic() - started:.1f}s at {c.url}")
    yield c
    serve.shutdown()
    ray.shutdown()
