"""Benchmark: the same drafts in-process and through the Ray Serve cluster (tiny preset by default).

Rows (markdown table on stdout):
- one draft alone (median of ``--repeats``): in-process vs cluster; the difference is the cluster's
  cost per job (HTTP through Serve's proxy, routing, JSON + base64 of the PNGs). In-process runs
  before and after the cluster and the better run counts (a busy machine shows as a gap);
- 16 concurrent drafts (best of ``--rounds``): wall time and images/s in-process, and through the
  cluster with 1 and 2 draft replicas (``--cpus-per-replica`` CPUs each); mean ``overhead`` per job
  as ClusterEngine measures it (time in flight minus the replica's own queue, run and encode time).

    .venv/bin/python benchmarks/cluster_bench.py            # CPU, tiny models, about 2-3 min on 2 cores
    .venv/bin/python benchmarks/cluster_bench.py --device cuda --preset sdxl --gpus-per-replica 0.5

Needs the ray extra (pip install -e ".[ray]"). It starts (and stops) a local Ray cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.requests import DraftRequest  # noqa: E402
from engine.settings import EngineSettings  # noqa: E402

TOKEN = "bench-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drafts(n: int, size: int, count: int) -> list[DraftRequest]:
    return [DraftRequest(f"a fox, take {i}", seed=1000 * i, width=size, height=size, count=count) for i in range(n)]


def in_process(settings: EngineSettings, args) -> dict:
    """The local engine's worker (what LocalEngine wraps): one alone, then N at once."""
    import torch

    from engine.worker import Engine

    torch.set_num_threads(args.cpus_per_replica)  # the same threads as one replica (Ray sets OMP_NUM_THREADS)
    # No preload: it would load the final model while the queue is idle, in the middle of the
    # measurement; the warm-up job loads Turbo (the cluster's replicas load theirs before serving).
    engine = Engine(settings.replace(preload=False)).start()
    try:
        warm = engine.submit(drafts(1, args.size, args.count)[0], user="warm")
        warm.future.result()
        alone = []
        for i in range(args.repeats):
            started = time.perf_counter()
            engine.submit(drafts(1, args.size, args.count)[0], user="u", job_id=f"alone-{i}").future.result()
            alone.append(time.perf_counter() - started)
        walls, results = [], []
        for round_ in range(args.rounds):
            started = time.perf_counter()
            handles = [
                engine.submit(r, user=f"user{i % 4}", job_id=f"many-{round_}-{i}")
                for i, r in enumerate(drafts(args.concurrency, args.size, args.count))
            ]
            results += [h.future.result() for h in handles]
            walls.append(time.perf_counter() - started)
    finally:
        engine.shutdown(timeout=10)
    return {"alone": statistics.median(alone), "wall": min(walls), "batches": [r.batch_size for r in results]}


async def through_cluster(url: str, args, *, alone: bool) -> dict:
    from engine.cluster.client import ClusterEngine

    engine = ClusterEngine(url, TOKEN)
    await engine.start()
    try:
        await (await engine.submit(drafts(1, args.size, args.count)[0], user="warm", job_id="warm")).result()
        times = []
        for i in range(args.repeats if alone else 0):
            started = time.perf_counter()
            await (await engine.submit(drafts(1, args.size, args.count)[0], user="u", job_id=f"alone-{i}")).result()
            times.append(time.perf_counter() - started)
        walls, results = [], []
        for round_ in range(args.rounds):
            started = time.perf_counter()
            handles = [
                await engine.submit(r, user=f"user{i % 4}", job_id=f"many-{round_}-{i}")
                for i, r in enumerate(drafts(args.concurrency, args.size, args.count))
            ]
            results += await asyncio.gather(*(h.result() for h in handles))
            walls.append(time.perf_counter() - started)
    finally:
        await engine.close(timeout=10)
    return {
        "alone": statistics.median(times) if times else None,
        "wall": min(walls),
        "batches": [r.batch_size for r in results],
        "overhead": statistics.mean(r.timings["overhead"] for r in results),
    }


def cluster_rows(settings: EngineSettings, args) -> dict:
    import ray
    from ray import serve

    from engine.cluster.serve_app import Scaling, build_app, deploy

    ray.init(
        num_cpus=max(4, 2 * args.cpus_per_replica + 1),
        num_gpus=None if args.gpus_per_replica else 0,
        object_store_memory=200 * 2**20,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
    )
    out = {}
    try:
        port = _free_port()
        for replicas in (1, 2):
            drafts_scaling = Scaling(replicas, replicas, args.gpus_per_replica, args.cpus_per_replica)
            finals = Scaling(1, 1, args.gpus_per_replica, 0)
            url = deploy(build_app(settings, token=TOKEN, drafts=drafts_scaling, finals=finals), port=port)
            out[replicas] = asyncio.run(through_cluster(url, args, alone=replicas == 1))
            serve.delete("imagine")
    finally:
        serve.shutdown()
        ray.shutdown()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny", choices=("tiny", "sdxl"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--count", type=int, default=1, help="images per draft request")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5, help="one draft alone: median of this many")
    parser.add_argument("--rounds", type=int, default=3, help="concurrent drafts: best of this many rounds")
    parser.add_argument("--cpus-per-replica", type=int, default=1)
    parser.add_argument("--gpus-per-replica", type=float, default=0.0)
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()

    settings = EngineSettings.from_env({**os.environ, "ENGINE_PRESET": args.preset})
    settings = settings.replace(device=args.device, **({"cache_dir": args.cache_dir} if args.cache_dir else {}))
    if settings.preset == "tiny":
        from engine.tiny import ensure_tiny_models

        ensure_tiny_models(settings.cache_dir)
    local = in_process(settings, args)
    cluster = cluster_rows(settings, args)
    again = in_process(settings, args)  # once more after the cluster: a busy machine shows as a gap
    local = {k: min(local[k], again[k]) if k != "batches" else local[k] + again[k] for k in local}
    images = args.concurrency * args.count

    def rate(wall: float) -> str:
        return f"{images / wall:.2f}"

    print(f"\n{platform.node()} {os.cpu_count()} CPUs, preset {settings.preset}, device {args.device}, ", end="")
    print(f"{args.concurrency} drafts of {args.count} image(s) at {args.size} px, {time.strftime('%Y-%m-%d')}\n")
    print("| work | in-process | cluster, 1 replica | cluster, 2 replicas |")
    print("|---|---|---|---|")
    one, two = cluster[1], cluster[2]
    print(f"| one draft alone, median s | {local['alone']:.3f} | {one['alone']:.3f} | |")
    print(f"| cluster cost per job (alone), ms | | {1000 * (one['alone'] - local['alone']):.0f} | |")
    print(
        f"| {args.concurrency} concurrent drafts, wall s "
        f"| {local['wall']:.2f} | {one['wall']:.2f} | {two['wall']:.2f} |"
    )
    print(f"| images/s | {rate(local['wall'])} | {rate(one['wall'])} | {rate(two['wall'])} |")
    print(
        f"| mean overhead per job (in flight - replica work), ms | | {1000 * one['overhead']:.0f} | "
        f"{1000 * two['overhead']:.0f} |"
    )
    print(f"| largest batch (jobs) | {max(local['batches'])} | {max(one['batches'])} | {max(two['batches'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
