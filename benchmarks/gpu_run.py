"""The GPU run's Python side (``benchmarks/gpu.sh`` calls it): build the models, then every table in one process.

    python benchmarks/gpu_run.py build --arch full --device cuda --cache-dir /tmp/bench-cache --models turbo,ssd-1b
    python benchmarks/gpu_run.py bench --arch full --device cuda --cache-dir /tmp/bench-cache --out $OUT \\
        --deadline EPOCH_SECONDS

``bench`` measures stock once (drafts, SSD-1B final) and divides every engine row by it, then, each stage
only if its usual time is left before ``--deadline``: the engine's start and full-size correctness (CUDA
graphs against eager at buckets 1, 4 and 16; a plain draft after a LoRA draft), draft rows (a new prompt
among them: no prompt-cache hit; a stage breakdown text / UNet / decode / encode), the SSD-1B final and
resident memory, restart to first draft (a new process), offload memory on an emulated 8 GB card
(``torch.cuda.set_per_process_memory_fraction``), base + refiner, and torch.compile. Each row is written
to ``--out`` the moment it is measured (:mod:`benchmarks.gpu_rows`). Exit status 1 when a row failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.gpu_rows import Rows  # noqa: E402
from benchmarks.plan import MODELS, PROMPT, log  # noqa: E402

LORA = "bench-lora"
# Seconds each stage usually takes on an H100 with the full-size models (it runs only if this much is left).
NEEDS = {"stock": 50, "engine": 45, "correctness": 40, "drafts": 30, "final": 20, "restart": 45, "offload": 70,
         "sdxl": 150, "compile": 150}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stage", choices=("build", "bench"))
    p.add_argument("--arch", choices=("full", "tiny"), default="full")
    p.add_argument("--device", default="cuda")
    p.add_argument("--cache-dir", type=Path, required=True)
    p.add_argument("--models", default="turbo,ssd-1b,sdxl-base,sdxl-refiner", help="build: which to save")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/gpu-out")))
    p.add_argument("--deadline", type=float, default=None, help="epoch seconds: no stage starts that would pass it")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--compile-backend", default="inductor", help="the compile stage's backend (dry run: aot_eager)")
    p.add_argument("--card-gib", type=float, default=8.0, help="the offload stage emulates a card of this size")
    return p.parse_args(argv)


def bench_args(args: argparse.Namespace, **extra: str) -> argparse.Namespace:
    """bench.py's flags for the same models, so the plan, folders and settings are bench.py's own."""
    from benchmarks.plan import parse_args

    # compile off: its stage turns it on (minutes of inductor per UNet must not eat the other stages' time)
    flags = ["--arch", args.arch, "--device", args.device, "--cache-dir", str(args.cache_dir), "--no-compile"]
    if args.repeats:
        flags += ["--repeats", str(args.repeats)]
    if args.warmup is not None:
        flags += ["--warmup", str(args.warmup)]
    for key, value in extra.items():
        flags += [f"--{key.replace('_', '-')}", value]
    return parse_args(flags)


class Bench:
    def __init__(self, args: argparse.Namespace):
        import torch

        from benchmarks.bench import build_models
        from benchmarks.folders import engine_settings
        from benchmarks.plan import make_plan

        self.args = args
        self.bargs = bench_args(args)
        self.plan = make_plan(self.bargs)
        self.cuda = self.plan.device.startswith("cuda")
        if not self.cuda:  # tiny ops gain nothing from threads, and a busy 2-core CI box punishes them (bench.py too)
            torch.set_num_threads(1)
        self.root = build_models(args.arch, args.cache_dir, self.bargs.init_std, self.plan.device, ("turbo", "ssd-1b"))
        self.settings = engine_settings(self.bargs, self.plan, self.root)
        self.folders = {m: self.root / m for m in MODELS}  # base + refiner exist once their stage built them
        self.rows = Rows(args.out, self.plan.device)
        self.sync = torch.cuda.synchronize if self.cuda else (lambda: None)
        self.seed = 900_000

    def left(self) -> float:
        return float("inf") if self.args.deadline is None else self.args.deadline - time.time()

    def wait_s(self) -> float:
        """How long one job may take: a hung job must not hold the stages after it past the deadline."""
        return max(5.0, min(self.plan.timeout, self.left()))

    def stage(self, name: str, fn, *a) -> None:
        if self.left() < NEEDS[name]:
            self.rows.begin(name, f"skipped: {self.left():.0f} s left, it needs about {NEEDS[name]} s")
            return
        log(f"[gpu_run] stage {name} ({self.left():.0f} s left)")
        try:
            fn(*a)
        except Exception as exc:  # a stage that dies must not take the later ones with it
            import traceback

            traceback.print_exc()
            self.rows.add(f"{name}: stage failed", None, error=f"{exc.__class__.__name__}: {exc}"[:400])

    def med(self, fn, repeats: int | None = None, warmup: int | None = None) -> float:
        from benchmarks.meters import timed

        p = self.plan
        return timed(fn, p.repeats if repeats is None else repeats, p.warmup if warmup is None else warmup,
                     self.sync)[0]

    def next_seed(self, n: int = 1) -> int:
        self.seed += n
        return self.seed

    # ---- the engine through its public API ---------------------------------------------------------

    def start_engine(self, **changes):
        from engine.worker import Engine

        engine = Engine(self.settings.replace(**changes)).start()
        engine.wait_ready(self.wait_s())
        return engine

    def submit(self, engine, request, user: str = "gpu"):
        return engine.submit(request, user=user).future.result(timeout=self.wait_s())

    def draft(self, engine, n: int = 1, prompt: str = PROMPT, seed: int | None = None, **kw):
        from engine.requests import DraftRequest

        px = self.plan.draft_px
        seed = self.next_seed(n) if seed is None else seed
        return self.submit(engine, DraftRequest(prompt, seed, width=px, height=px, count=n, steps=1, **kw))

    def burst(self, engine, n: int = 16, prompt: str = PROMPT, seed: int | None = None):
        from engine.requests import DraftRequest

        px = self.plan.draft_px
        base = self.next_seed(n) if seed is None else seed
        handles = [engine.submit(DraftRequest(f"{prompt}, take {i}", base + i, width=px, height=px, count=1),
                                 user=f"user-{i}") for i in range(n)]
        return [h.future.result(timeout=self.wait_s()) for h in handles]

    def final(self, engine, model: str = "ssd-1b", seed: int | None = None):
        from engine.requests import FinalRequest

        p = self.plan
        steps, guidance = (p.ssd1b_steps, p.guidance_ssd1b) if model == "ssd-1b" else (p.sdxl_steps, p.guidance_sdxl)
        request = FinalRequest(PROMPT, self.next_seed() if seed is None else seed, width=p.final_px,
                               height=p.final_px, model=model, steps=steps, guidance=guidance, refiner_split=p.split)
        return self.submit(engine, request)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from benchmarks.preflight import set_offline

    set_offline()
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.stage == "build":
        from benchmarks.bench import build_models

        started = time.perf_counter()
        root = build_models(args.arch, args.cache_dir, 0.02, args.device, tuple(args.models.split(",")))
        print(f"built {args.models} under {root} in {time.perf_counter() - started:.1f} s", flush=True)
        return 0
    from benchmarks.gpu_stages import run_all

    # The engines here use LoRA alone (a random full-size one); the hub's IP-Adapter, BLIP and upscaler are
    # not on the machine (the gpu tests cover those add-ons with tiny weights).
    for key in ("REFERENCE_MODEL", "DESCRIBE_MODEL", "UPSCALER_MODEL"):
        os.environ.setdefault(key, "off")

    bench = Bench(args)
    run_all(bench)
    if bench.rows.errors:
        log("FAILED rows: " + "; ".join(bench.rows.errors))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
