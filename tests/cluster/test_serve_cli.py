"""``python -m engine serve``: what an owner runs. It prints the bot's line, serves, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import pytest

from engine.cluster.client import ClusterEngine
from engine.requests import DraftRequest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_serve_prints_the_bots_line_serves_drafts_and_stops_on_sigterm(tiny_cache_dir):
    pytest.importorskip("ray.serve", reason="ray[serve] is not installed (pip install -e '.[ray]')")
    port = _free_port()
    env = {**os.environ, "ENGINE_CACHE_DIR": str(tiny_cache_dir), "ENGINE_TOKEN": "", "RAY_ADDRESS": ""}
    command = [sys.executable, "-m", "engine", "serve", "--preset", "tiny", "--device", "cpu"]
    # "local": a cluster of its own, even while the tests' cluster runs on this machine.
    command += ["--address", "local", "--port", str(port)]
    proc = await asyncio.create_subprocess_exec(
        *command, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 180)).decode()
        match = re.fullmatch(r"ENGINE_BACKEND=ray ENGINE_URL=(\S+) ENGINE_TOKEN=(\S+)\n", line)
        assert match, line
        url, token = match.groups()
        assert url == f"http://127.0.0.1:{port}" and len(token) >= 24  # loopback, a token made up for us
        engine = ClusterEngine(url, token)
        await engine.start()
        handle = await engine.submit(DraftRequest("fox", seed=5, width=256, height=256), user="u", job_id="cli")
        assert [image.seed for image in (await handle.result()).images] == [5, 6, 7, 8]
        await engine.close()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
