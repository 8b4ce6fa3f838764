"""The bot's HTTP link to the cluster's ingress (aiohttp, through Serve's proxy): no torch, no Ray.

- :meth:`ClusterLink.run` is one ``POST /jobs``: its answer streams NDJSON lines (``engine.cluster.wire``),
  progress (handed to ``on_progress``), then the result. Closing the stream (a cancelled task) drops
  the connection, and the cluster stops the job at its next step.
- :meth:`ClusterLink.health` is one ``GET /health``.

What goes wrong is told apart for the client's queue: :class:`ClusterDown` (keep the job queued),
:class:`WorkerLost` (the job started but its replica went away: retry once), or JobFailed /
JobCancelled (the job's own end).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, NoReturn

import aiohttp

from ..api import JobCancelled, JobFailed
from ..requests import Request
from ..results import JobResult
from . import wire

UNREACHABLE_STATUSES = {404, 500, 502, 503, 504}  # the proxy is up but the application is not (yet)


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
        """Run one job; ``on_line`` gets each progress line. Raises ClusterDown, WorkerLost, JobFailed, JobCancelled."""
        session = self._require()
        body = {"job_id": job_id, "request": wire.encode_request(request)}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout, sock_read=self._read_timeout)
        try:
            response = await session.post(f"{self.url}/jobs", json=body, timeout=timeout)
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
            raise ClusterDown(f"cannot connect to {self.url}: {exc.__class__.__name__}") from exc
        try:
            if response.status == 401:
                raise ClusterDown("the cluster refused ENGINE_TOKEN (401)")
            if response.status in UNREACHABLE_STATUSES:
                raise ClusterDown(f"the cluster answered HTTP {response.status} (not deployed?)")
            if response.status != 200:
                text = (await response.text())[:200]
                raise JobFailed(f"The engine cluster refused the job (HTTP {response.status}: {text}).")
            try:
                async for raw in response.content:
                    if not raw.strip():
                        continue
                    line = wire.parse_line(raw)
                    if line["type"] == "progress":
                        on_line(line)
                        continue
                    if line["type"] == "result":
                        return wire.decode_result(line["result"])
                    raise_error(line)
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                raise WorkerLost(f"the stream broke: {exc.__class__.__name__}") from exc
            raise WorkerLost("the stream ended without a result")
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


def raise_error(line: dict[str, Any]) -> NoReturn:
    """Raise what an ``error`` line stands for."""
    kind = line.get("kind")
    message = str(line.get("message") or "The engine cluster failed this job.")
    if kind == "cancelled":
        raise JobCancelled(message)
    if kind == "worker_lost":
        raise WorkerLost(message)
    raise JobFailed(message)
