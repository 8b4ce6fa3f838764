"""Stock diffusers vs the engine, same saved components, same run: one markdown table with ratios.

    python benchmarks/bench.py                      # tiny preset on the CPU: a smoke run (CI runs it)
    python benchmarks/bench.py --arch full --device cuda --out docs/bench-h100.md   # issue 5, on a GPU

The stock side is what a newcomer writes: ``DiffusionPipeline.from_pretrained(folder, dtype=...)``
then ``pipe(prompt)`` with the pipeline's defaults except the documented recipe settings (Turbo: 1
step, guidance 0, 512 px; SSD-1B: 1024 px, 30 steps, guidance on; SDXL base + refiner: 40 steps,
``denoising_end``/``denoising_start`` 0.8, the refiner sharing the base's second text encoder and
VAE as in the diffusers docs). The engine side is ``engine.worker.Engine`` with ``EngineSettings``
pointing at the very same folders, timed from ``submit`` to the finished ``JobResult`` (PNGs
encoded). Both run in one process, one after the other (stock first), so memory is measured per
side: ``torch.cuda.max_memory_allocated`` on CUDA, resident set size growth on the CPU.

A second table (``benchmarks/ladder.py``) has a row per step of issue 10: one engine started with
every step off, then each step switched on in turn, with per-stage times (text encoders, UNet,
decode), the batches a burst ran as, the text-encoder runs of a reroll, peak memory and the graphs
compiled while timed. ``--restart`` (default on CUDA) also times a new process from its start to its
first draft, with the compile cache the runs before left on disk.

``--arch full`` builds the published architectures (``engine/architectures.json``) with random
weights (``init_std`` 0.02 so float16 does not overflow), saves them once under ``--cache-dir`` and
loads both sides from there. Exit status 1 when a measurement fails, an output holds NaN/inf, a
loaded module is not in the asked dtype, or the same seed gives different images (beyond
``--equiv-tol``).

The parts: :mod:`benchmarks.plan` (the rows, the flags, the plan), :mod:`benchmarks.folders` (the
models both sides load), :mod:`benchmarks.sides` (stock and engine), :mod:`benchmarks.meters` (timing,
memory, one side's run) and :mod:`benchmarks.report` (rows, ratios, the table, what failed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere, installed or not
    sys.path.insert(0, str(REPO))

# After the path above (this file runs as a script): the benchmark's parts.
from benchmarks.folders import build_random, draft_decoder_folder, engine_settings, resolve_folders  # noqa: E402
from benchmarks.meters import free_memory, measure, prepare_process, timed  # noqa: E402
from benchmarks.plan import MODELS, Plan, log, make_plan, parse_args  # noqa: E402
from benchmarks.report import build_rows, judge, render, system_meta, write_outputs  # noqa: E402
from benchmarks.sides import EngineSide, StockSide  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, description=__doc__.split("\n\n")[0])
    if args.restart_probe is not None:  # the child of --restart: one start, one draft, one JSON line
        from benchmarks.ladder import restart_probe

        print(json.dumps(restart_probe(args.restart_probe, args.draft_px or 512, args.restart_started or time.time())))
        return 0
    import logging
    import warnings

    import torch

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        import diffusers
        import transformers

        diffusers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except Exception:  # cosmetic
        pass

    plan = make_plan(args)
    threads_before = torch.get_num_threads()
    threads = args.threads or (1 if plan.quick and plan.device == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run(args, argv, plan)
    finally:
        torch.set_num_threads(threads_before)


def build_models(arch: str, cache_dir: Path, init_std: float, device: str,
                 models: tuple[str, ...] = MODELS) -> Path:
    """The random-weight pipelines both sides load, built and saved once (bench.py and benchmarks/gpu_run.py)."""
    return build_random(arch, Path(cache_dir), init_std, device, models=models)


def run_ladder(args: argparse.Namespace, plan: Plan, settings, dtype_override: bool):
    """The steps table and the restart probe; (None, None) with ``--no-ladder`` and no restart."""
    from benchmarks.ladder import Ladder, measure_restart

    cuda = plan.device.startswith("cuda")
    steps = restart = None
    sync = (lambda: __import__("torch").cuda.synchronize()) if cuda else (lambda: None)
    if args.ladder and not dtype_override:
        compile_steps = args.ladder_compile if args.ladder_compile is not None else cuda
        ladder = Ladder(settings, plan, timed, sync, plan.concurrency, compile_steps)
        free_memory(plan.device)
        steps = ladder.run(log)
        free_memory(plan.device)
    if args.restart if args.restart is not None else cuda:
        graphs = cuda and settings.cuda_graphs is not False and settings.memory != "offload"
        what = "torch.compile" if settings.compile_on(plan.device) else ("CUDA graphs" if graphs else "eager")
        restart = measure_restart(settings, plan.draft_px, Path(__file__), what)
        log(f"restart to first draft: {restart}")
    return steps, restart


def _run(args: argparse.Namespace, argv: list[str] | None, plan: Plan) -> int:
    import torch

    root = None
    if args.arch:
        from engine.settings import EngineSettings

        cache = args.cache_dir or EngineSettings().cache_dir
        root = build_models(args.arch, Path(cache), args.init_std, plan.device)
        if args.prepare_only:
            print(root)
            return 0
    elif args.prepare_only:
        raise SystemExit("--prepare-only needs --arch")
    settings = engine_settings(args, plan, root)
    folders = resolve_folders(settings, plan)
    meta = system_meta(args, plan, folders, argv)
    engine_dtype = torch.float16 if plan.device.startswith(("cuda", "mps")) else torch.float32
    dtype_override = plan.dtype != engine_dtype
    if dtype_override:
        meta["notes"].append(
            f"engine dtype forced to {meta['dtype']} through `engine.registry.dtype` with preload off "
            "(EngineSettings has no dtype); its start-to-first-draft row then excludes the SSD-1B preload"
        )
    prepare_process(folders, plan)

    log(f"device {meta['device_name']} ({plan.device}, {meta['dtype']}); models {meta['models']}")
    wall, cpu0 = time.perf_counter(), sum(os.times()[:2])
    stock_side = StockSide(folders, plan, draft_decoder_folder(settings))
    stock = measure(stock_side, plan)
    eng_side = EngineSide(settings, plan, dtype_override)
    eng = measure(eng_side, plan)
    steps, restart = run_ladder(args, plan, settings, dtype_override)

    rows = build_rows(plan, stock, eng, meta)
    bad = judge(plan, rows, stock, eng, stock_side.nonfinite, eng_side.batches, meta)
    cpu_s = sum(os.times()[:2]) - cpu0
    meta["notes"].append(f"benchmark wall time {time.perf_counter() - wall:.1f} s, process CPU time {cpu_s:.1f} s "
                         f"(load average at the end {os.getloadavg()[0]:.1f})")
    table = render(rows, meta)
    if steps is not None:
        from benchmarks.ladder import render as render_steps

        stock_values = {k: stock.values[k] for k in ("draft1", "draft4", "burst", "ssd1b") if k in stock.values}
        table += "\n" + render_steps(steps, stock_values, meta["cuda"], plan.concurrency, restart)
        for s in steps:
            bad += [f"step {s.key}: {k}: {e}" for k, e in s.errors.items()]
    if restart is not None and "error" in restart:
        bad.append(f"restart: {restart['error']}")
    print(table)
    if args.out:
        payload = {
            "meta": meta,
            "plan": {k: (str(v) if k == "dtype" else v) for k, v in vars(plan).items()},
            "rows": [vars(r) for r in rows],
            "runs": {"stock": stock.runs, "engine": eng.runs},
            "errors": {"stock": stock.errors, "engine": eng.errors},
            "extras": {"stock": stock.extras, "engine": {**eng.extras, "batches": eng_side.batches,
                                                         "job_timings": eng_side.timings}},
            "steps": [vars(s) for s in steps] if steps is not None else None,
            "restart": restart,
        }
        write_outputs(args.out, table, payload)
    if bad:
        log("FAILED: " + "; ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
