"""One local Ray cluster (CPU only, small object store) with the engine deployed, for the whole session.

Starting Ray and loading the tiny models into the replicas takes most of this folder's time, so it
happens once; tests that break the cluster (killing a replica, stopping Serve) leave it running again.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.settings import EngineSettings

TOKEN = "test-token-3f9a"
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    url: str
    token: str
    port: int
    settings: EngineSettings

    def app(self):
        from engine.cluster.serve_app import Scaling, build_app

        return build_app(self.settings, token=self.token, drafts=Scaling(cpus=1), finals=Scaling(cpus=1))

    def redeploy(self) -> None:
        """Start Serve and the application again (after a test stopped it)."""
        from engine.cluster.serve_app import deploy

        deploy(self.app(), port=self.port)


@pytest.fixture(scope="session")
def cluster(tiny_cache_dir) -> Cluster:
    pytest.importorskip("ray.serve", reason="ray[serve] is not installed (pip install -e '.[ray]')")
    import ray
    from ray import serve

    from engine.cluster.serve_app import deploy

    started = time.monotonic()
    ray.init(
        num_cpus=4,
        num_gpus=0,
        object_store_memory=100 * 2**20,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}},
    )
    settings = EngineSettings.for_preset("tiny", cache_dir=tiny_cache_dir, device="cpu")
    port = _free_port()
    c = Cluster("", TOKEN, port, settings)
    c.url = deploy(c.app(), port=port)
    print(f"cluster up in {time.monotonic() - started:.1f}s at {c.url}")
    yield c
    serve.shutdown()
    ray.shutdown()
