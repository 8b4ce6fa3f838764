"""How many replicas of a worker deployment run and what each may use (``serve_app`` builds, ``ingress`` reads)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Scaling:
    """Replicas and resources of one worker deployment."""

    min_replicas: int = 1
    max_replicas: int = 1
    gpus: float = 0.0  # per replica; fractions share a GPU between replicas
    cpus: float = 1.0
    target_ongoing: float = 1.0  # autoscaling: requests in flight per replica it aims for

    def options(self) -> dict[str, Any]:
        """``Deployment.options`` for these numbers: fixed replicas, or autoscaling between min and max."""
        actor = {"num_gpus": self.gpus, "num_cpus": self.cpus}
        if self.max_replicas > self.min_replicas:
            return {
                "ray_actor_options": actor,
                "autoscaling_config": {
                    "min_replicas": self.min_replicas,
                    "max_replicas": self.max_replicas,
                    "initial_replicas": self.min_replicas,
                    "target_ongoing_requests": self.target_ongoing,
                },
            }
        return {"ray_actor_options": actor, "num_replicas": self.min_replicas}
