"""Settings of the cluster side (``python -m engine serve``), read from the environment. Ray-free.

Every name here is documented in `.env.example` (section "Cluster engine").
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

from ..settings import SettingsError

_ENV = {
    "token": "ENGINE_TOKEN",
    "host": "ENGINE_SERVE_HOST",
    "port": "ENGINE_SERVE_PORT",
    "address": "RAY_ADDRESS",
    "draft_replicas": "ENGINE_DRAFT_REPLICAS",
    "draft_max_replicas": "ENGINE_DRAFT_MAX_REPLICAS",
    "final_replicas": "ENGINE_FINAL_REPLICAS",
    "final_max_replicas": "ENGINE_FINAL_MAX_REPLICAS",
    "draft_gpus": "ENGINE_DRAFT_GPUS",
    "final_gpus": "ENGINE_FINAL_GPUS",
    "replica_cpus": "ENGINE_REPLICA_CPUS",
    "batch_wait_ms": "ENGINE_BATCH_WAIT_MS",
}


@dataclass(frozen=True)
class ClusterSettings:
    token: str = ""  # empty: ``serve`` makes one up and prints it
    host: str = "127.0.0.1"  # where Serve's HTTP proxy listens; loopback unless told otherwise
    port: int = 8000
    address: str = ""  # a running Ray cluster ("auto", "10.0.0.5:6379"); empty: find one or start one here
    draft_replicas: int = 1
    draft_max_replicas: int = 0  # above draft_replicas: autoscale between the two; 0 = no autoscaling
    final_replicas: int = 1
    final_max_replicas: int = 0
    draft_gpus: float = -1.0  # GPUs per replica (fractions share a GPU); -1 = 0.5 if the cluster has GPUs, else 0
    final_gpus: float = -1.0
    replica_cpus: float = 1.0
    batch_wait_ms: float = 5.0  # how long a draft batch waits for more drafts to join

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ClusterSettings:
        env = dict(os.environ if env is None else env)
        types = {f.name: f.type for f in fields(cls)}
        changes: dict[str, object] = {}
        for attr, var in _ENV.items():
            raw = (env.get(var) or "").strip()
            if not raw:
                continue
            try:
                changes[attr] = {"int": int, "float": float}.get(types[attr], str)(raw)
            except ValueError:
                raise SettingsError(f"{var}={raw!r} is not a valid {types[attr]}.") from None
        return replace(cls(), **changes).validate()

    def validate(self) -> ClusterSettings:
        for name in ("draft", "final"):
            low, high = getattr(self, f"{name}_replicas"), getattr(self, f"{name}_max_replicas")
            if low < 1:
                raise SettingsError(f"ENGINE_{name.upper()}_REPLICAS must be at least 1.")
            if high and high < low:
                raise SettingsError(
                    f"ENGINE_{name.upper()}_MAX_REPLICAS must be 0 or at least ENGINE_{name.upper()}_REPLICAS."
                )
            gpus = getattr(self, f"{name}_gpus")
            if gpus != -1.0 and gpus < 0:
                raise SettingsError(f"ENGINE_{name.upper()}_GPUS must be 0 or more (or -1 for automatic).")
        if not (1 <= self.port <= 65535):
            raise SettingsError("ENGINE_SERVE_PORT must be 1 to 65535.")
        if self.replica_cpus < 0 or self.batch_wait_ms < 0:
            raise SettingsError("ENGINE_REPLICA_CPUS and ENGINE_BATCH_WAIT_MS must be 0 or more.")
        return self
