"""The bot's HTTP link to the cluster's ingress (aiohttp, through Serve's proxy): no torch, no Ray.

- :meth:`ClusterLink.run` is one ``POST /jobs`` (one job frame): its answer streams length-prefixed
  frames (``engine.cluster.wire``), progress (handed to ``on_progress``), then the result. Closing the
  stream (a cancelled task) drops the connection, and the cluster stops the job at its next step.
- :meth:`ClusterLink.health` is one ``GET /health``.

What goes wrong is told apart for the client's queue: :class:`ClusterDown` (keep the job queued),
:class:`WorkerLost` (the job started but its replica went away: retry once), or JobFailed /
JobCancelled (the job's own end). A stream cut inside a frame is a lost worker; one that is not
frames of this bot's wire format fails the job with :data:`UNREADABLE`, the details in the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import fields
from typing import Any, NoReturn

import aiohttp

from ..api import EngineOffer, JobCancelled, JobFailed
from ..requests import Request
from ..results import JobResult
from . import wire

log = logging.getLogger(__name__)

UNREACHABLE_STATUSES = {404, 500, 502, 503, 504}  # the proxy is up but the application is not (yet)
UNREADABLE = (
    "The engine cluster sent an answer this bot cannot read (the bot and the cluster may run different "
    "versions), so the job was stopped. Please retry, and tell the bot's owner if it happens again."
)
TOO_LARGE = "The images of this job are too large for the engine cluster; try smaller ones."
READ_CHUNK = 2**16


class ClusterDown(Exception):
    """The cluster could not take the job (unreachable, not deployed, token refused): keep it queued."""


class WorkerLost(Exception):
    """The job started but its replica (or the connection to it) went away before the result."""


class ClusterLink:
    """One HTTP session to the ingress at ``url``, with the bearer token."""

    def __init__(self, url: str, token: str | None, *, connect_timeout_s: float, read_timeout_s: float):
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._connect_timeout = connect_timeout_s
        self._read_timeout = read_timeout_s
        self._session: aiohttp.ClientSession | None = None

    @property
    def open(self) -> bool:
        return self._session is not None

    def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _require(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("ClusterLink.start() must be called first.")
        return self._session

    async def run(self, job_id: str, request: Request, on_line: Callable[[dict[str, Any]], None]) -> JobResult:
        """One job; ``on_line`` gets each progress frame. Raises ClusterDown, WorkerLost, JobFailed, JobCancelled."""
        session = self._require()
        body = wire.job_frame(job_id, request)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout, sock_read=self._read_timeout)
        headers = {"Content-Type": wire.MEDIA_TYPE}
        try:
            response = await session.post(f"{self.url}/jobs", data=body, headers=headers, timeout=timeout)
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
            raise ClusterDown(f"cannot connect to {self.url}: {exc.__class__.__name__}") from exc
        try:
            if response.status == 401:
                raise ClusterDown("the cluster refused ENGINE_TOKEN (401)")
            if response.status in UNREACHABLE_STATUSES:
                raise ClusterDown(f"the cluster answered HTTP {response.status} (not deployed?)")
            if response.status != 200:
                text = (await response.text())[:200]
                log.error("the cluster refused job %s: HTTP %s %s", job_id, response.status, text)
                if response.status == 413:
                    raise JobFailed(TOO_LARGE)
                raise JobFailed(f"The engine cluster refused the job (HTTP {response.status}). {_RETRY}")
            if response.content_type != wire.MEDIA_TYPE:
                log.error("job %s: the cluster answered %s, not %s", job_id, response.content_type, wire.MEDIA_TYPE)
                raise JobFailed(UNREADABLE)
            return await _read_answer(job_id, response, on_line)
        finally:
            response.close()  # on cancel: drop the connection, so the cluster stops the job

    async def health(self) -> dict[str, Any]:
        """The cluster's ``/health`` answer. Raises ClusterDown (with why) when it cannot be had."""
        session = self._require()
        timeout = aiohttp.ClientTimeout(total=self._connect_timeout)
        try:
            async with session.get(f"{self.url}/health", timeout=timeout) as response:
                if response.status == 401:
                    raise ClusterDown("the cluster refused ENGINE_TOKEN (401)")
                if response.status != 200:
                    raise ClusterDown(f"the cluster answered HTTP {response.status} (not deployed?)")
                return await response.json()
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise ClusterDown(f"cannot reach {self.url}: {exc.__class__.__name__}") from exc


_RETRY = "Please retry, and tell the bot's owner if it happens again."


async def _read_answer(
    job_id: str, response: aiohttp.ClientResponse, on_line: Callable[[dict[str, Any]], None]
) -> JobResult:
    """Progress frames to ``on_line``, then the result (or the error a frame stands for)."""
    try:
        async for frame in wire.read_frames(response.content.iter_chunked(READ_CHUNK)):
            if frame["type"] == "progress":
                on_line(frame)
                continue
            if frame["type"] == "result":
                return wire.decode_result(frame["result"])
            raise_error(frame)
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
        raise WorkerLost(f"the stream broke: {exc.__class__.__name__}") from exc
    except wire.TruncatedFrame as exc:
        raise WorkerLost(str(exc)) from exc
    except (wire.WireError, KeyError, TypeError, ValueError, AttributeError) as exc:
        log.error("job %s: the cluster's answer cannot be read: %s", job_id, exc)
        raise JobFailed(UNREADABLE) from exc
    raise WorkerLost("the stream ended without a result")


def raise_error(line: dict[str, Any]) -> NoReturn:
    """Raise what an ``error`` line stands for."""
    kind = line.get("kind")
    message = str(line.get("message") or "The engine cluster failed this job.")
    if kind == "cancelled":
        raise JobCancelled(message)
    if kind == "worker_lost":
        raise WorkerLost(message)
    raise JobFailed(message)


def read_health(status: Any, queue_max: int | None) -> tuple[dict[str, int], dict[str, int], EngineOffer]:
    """(replicas, capacity, offer) from the cluster's ``/health`` answer; ``queue_max``: this side's limit.

    Raises AttributeError, TypeError, ValueError or OverflowError on an answer that is not this bot's
    ingress's (a proxy's page, another version): everything is read before anything is used.
    """
    replicas = status.get("replicas") or {}
    capacity = status.get("capacity") or {}
    counts = {"draft": int(replicas.get("draft", 0)), "final": int(replicas.get("final", 0))}
    room = {"draft_images": int(capacity.get("draft_images", 0)), "final": int(capacity.get("final", 0))}
    offer = status.get("offer") or {}
    known = {f.name for f in fields(EngineOffer)}
    values = {k: v for k, v in offer.items() if k in known}
    for name in ("final_models", "loras"):
        if name in values:
            values[name] = tuple(values[name])
    if "queue_max" in values:
        values["queue_max"] = int(values["queue_max"])
    if queue_max is not None:  # this side's limit, and the offer says so
        values["queue_max"] = queue_max
    return counts, room, EngineOffer(**{**values, "backend": "ray"})
