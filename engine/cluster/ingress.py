"""The HTTP door of the cluster: a Ray Serve deployment in front of the GPU workers.

:class:`Ingress` answers through Serve's proxy: it checks the shared secret (bearer ``ENGINE_TOKEN``),
reports health and capacity (``GET /health``, the replicas the Serve controller counts as running),
and runs a job (``POST /jobs``, one frame of at most ``wire.MAX_FRAME_BYTES``) on the draft or final
workers (``engine.cluster.workers``), passing their frames on (``engine.cluster.wire``). A worker that
dies mid-job is a ``worker_lost`` frame.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator
from ray.serve.schema import ReplicaState
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response, StreamingResponse

from . import wire
from .workers import DRAFTS, FINALS

if TYPE_CHECKING:
    from .scaling import Scaling

log = logging.getLogger(__name__)

APP_NAME = "imagine"
WORKER_LOST = (RayActorError, ActorUnavailableError)



def _authorized(header: str | None, token: str) -> bool:
    expected = f"Bearer {token}".encode()
    return hmac.compare_digest((header or "").encode(), expected)


class Ingress:
    """The HTTP door of the cluster: token check, health and capacity, job streams."""

    def __init__(
        self,
        drafts: DeploymentHandle,
        finals: DeploymentHandle,
        *,
        token: str,
        offer: dict[str, Any],
        draft_scaling: Scaling,
        final_scaling: Scaling,
        draft_images_per_replica: int,
    ):
        self._drafts = drafts
        self._finals = finals
        self._token = token
        self._offer = offer
        self._draft_scaling = draft_scaling
        self._final_scaling = final_scaling
        self._draft_images = draft_images_per_replica
        self._replicas: dict[str, int] = {}
        self._replicas_at = 0.0

    async def __call__(self, http: HttpRequest) -> Response:
        if not _authorized(http.headers.get("authorization"), self._token):
            return JSONResponse({"error": "missing or wrong bearer token (ENGINE_TOKEN)"}, status_code=401)
        path = http.url.path.rstrip("/")
        if http.method == "GET" and path == "/health":
            return JSONResponse(await self._health())
        if http.method == "POST" and path == "/jobs":
            try:
                job_id, payload = await wire.read_job(http.stream(), http.headers)
            except wire.OversizeFrame as exc:
                log.warning("a job was refused: %s", exc)
                return JSONResponse({"error": f"a job is at most {wire.MAX_FRAME_BYTES} bytes"}, status_code=413)
            except wire.WireError as exc:
                log.warning("a job was refused: %s", exc)
                return JSONResponse({"error": f"the body must be one {wire.MEDIA_TYPE} job frame"}, status_code=400)
            final_lane = payload.get("kind") in ("final", "upscale")
            stream = self._final_stream(job_id, payload) if final_lane else self._draft_stream(job_id, payload)
            return StreamingResponse(stream, media_type=wire.MEDIA_TYPE)
        return JSONResponse({"error": f"no route {http.method} {path}"}, status_code=404)

    async def _draft_stream(self, job_id: str, payload: dict) -> AsyncIterator[bytes]:
        try:
            yield await self._drafts.run.remote(job_id, payload)
        except WORKER_LOST as exc:
            log.warning("draft job %s lost its replica: %s", job_id, exc.__class__.__name__)
            yield wire.error_frame("worker_lost", "The GPU worker running this job stopped.")
        except Exception as exc:
            yield _ingress_failure(job_id, exc)

    async def _final_stream(self, job_id: str, payload: dict) -> AsyncIterator[bytes]:
        response = self._finals.options(stream=True).run.remote(job_id, payload)
        assert isinstance(response, DeploymentResponseGenerator)  # stream=True
        finished = False
        try:
            async for frame in response:
                yield frame
            finished = True
        except WORKER_LOST as exc:
            finished = True
            log.warning("final job %s lost its replica: %s", job_id, exc.__class__.__name__)
            yield wire.error_frame("worker_lost", "The GPU worker running this job stopped.")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            finished = True
            yield _ingress_failure(job_id, exc)
        finally:
            if not finished:
                response.cancel()  # the bot closed the stream: stop the final at its next step

    async def _health(self) -> dict[str, Any]:
        replicas = await self._running_replicas()
        per_final = 1
        draft_replicas = replicas.get(DRAFTS, 0)
        final_replicas = replicas.get(FINALS, 0)
        return {
            "ok": draft_replicas > 0 and final_replicas > 0,
            "replicas": {"draft": draft_replicas, "final": final_replicas},
            # What the bot may have in flight at once, so Serve's own queues stay short (its FIFO
            # must not reorder the bot's fair queue). With autoscaling, one more replica's worth,
            # so demand can make the autoscaler add a replica.
            "capacity": {
                "draft_images": self._draft_images * _room(draft_replicas, self._draft_scaling),
                "final": per_final * _room(final_replicas, self._final_scaling),
            },
            "offer": self._offer,
        }

    async def _running_replicas(self) -> dict[str, int]:
        if time.monotonic() - self._replicas_at < 2.0:
            return self._replicas
        self._replicas = await asyncio.to_thread(_count_replicas)
        self._replicas_at = time.monotonic()
        return self._replicas


def _ingress_failure(job_id: str, exc: Exception) -> bytes:
    """A failure between the ingress and a worker (the workers answer their own errors as lines)."""
    log.error("job %s failed in the ingress", job_id, exc_info=exc)
    return wire.error_frame("failed", f"The engine cluster failed: {exc.__class__.__name__}. Please retry.")


def _room(running: int, scaling: Scaling) -> int:
    if scaling.max_replicas > running and scaling.max_replicas > scaling.min_replicas:
        return running + 1
    return running


def _count_replicas() -> dict[str, int]:
    """RUNNING replicas of each deployment of this application, from the Serve controller."""
    try:
        app = serve.status().applications.get(APP_NAME)
    except Exception:
        log.warning("could not read the Serve status", exc_info=True)
        return {}
    if app is None:
        return {}
    return {name: d.replica_states.get(ReplicaState.RUNNING, 0) for name, d in app.deployments.items()}


ingress_deployment = serve.deployment(name="Ingress", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)(
    Ingress
)
