"""The GPU run's stages, in order (``benchmarks/gpu_run.py bench``); each writes its rows as it measures them."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from benchmarks.gpu_rows import fmt, memory, reset_peaks
from benchmarks.gpu_run import LORA, REPO, Bench
from benchmarks.plan import PROMPT

TOL = 1.0  # mean |pixel difference| (0-255) that counts as the same image in 16-bit
STAGES = ("text", "unet", "decode", "encode", "queued")


def run_all(b: Bench) -> None:
    b.stage("stock", stock, b)
    b.stage("engine", engine, b)
    b.stage("restart", restart, b)
    b.stage("offload", offload, b)
    b.stage("sdxl", sdxl, b)
    b.stage("compile", compiled, b)


def pixel_diff(a, b) -> float:
    """Mean |difference| in 0-255 levels between the first images of two JobResults."""
    import numpy as np

    from benchmarks.meters import to_levels

    x, y = to_levels([a.images[0].png, b.images[0].png])
    return float(np.abs(x.astype(np.float32) - y.astype(np.float32)).mean())


def breakdown(results) -> tuple[float, str]:
    """Median total of some JobResults, and the median of each stage beside it."""
    total = statistics.median(r.timings.get("total", 0.0) for r in results)
    parts = [f"{s} {fmt(statistics.median(r.timings.get(s, 0.0) for r in results), 's')}" for s in STAGES
             if any(s in r.timings for r in results)]
    return total, " / ".join(parts) or f"timings {sorted(results[0].timings)}"


def stock(b: Bench) -> None:
    from benchmarks.folders import draft_decoder_folder
    from benchmarks.meters import free_memory, prepare_process
    from benchmarks.sides import StockSide

    p, r = b.plan, b.rows
    r.begin("Stock diffusers (measured once; the engine rows divide by it)",
            f"DiffusionPipeline.from_pretrained + pipe(...): Turbo 1 step {p.draft_px} px; SSD-1B {p.final_px} px, "
            f"{p.ssd1b_steps} steps, guidance {p.guidance_ssd1b:g}; median of {p.repeats} after {p.warmup} warm-up")
    prepare_process({k: b.folders[k] for k in ("turbo", "ssd-1b")}, p)
    reset_peaks(p.device)
    side = StockSide(b.folders, p, draft_decoder_folder(b.settings))
    try:
        started = time.perf_counter()
        side.start()
        b.sync()
        r.keep_stock("start", time.perf_counter() - started)
        r.add("load Turbo + first draft", r.stock["start"])
        for key, name, fn in (("draft1", "draft, 1 image", lambda: side.draft(1)),
                              ("draft4", "drafts, 4 images in one call", lambda: side.draft(4))):
            r.keep_stock(key, r.try_row(name, lambda fn=fn: b.med(fn)))
        n = p.concurrency
        r.keep_stock("burst", r.try_row(f"{n} prompts in one call", lambda: n / b.med(lambda: side.burst(n)), "img/s"))
        side.load_ssd1b()
        r.keep_stock("ssd1b", r.try_row("SSD-1B final", lambda: b.med(side.ssd1b)))
        m = memory(p.device)
        r.add("peak memory, Turbo + SSD-1B loaded", m.get("reserved", m.get("rss")), "B", note="reserved")
    finally:
        side.close()
        free_memory(p.device)


def make_lora(b: Bench) -> Path:
    """A random LoRA for this Turbo UNet's attention (peft, as trained ones are saved), made without its weights."""
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    folder = b.args.cache_dir / f"{b.root.name}-loras"
    if (folder / f"{LORA}.safetensors").exists():
        return folder
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(b.root / "turbo", subfolder="unet"))
        unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    unet.to_empty(device="cpu")  # untouched pages: only the LoRA layers are ever written
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_" in name:  # delta W = B A: about 0.005 per weight beside the base's 0.02
                param.normal_(0.0, 0.25 if "lora_A" in name else 0.01, generator=generator)
    layers = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(unet).items()}
    del unet
    StableDiffusionXLPipeline.save_lora_weights(folder, unet_lora_layers=convert_state_dict_to_diffusers(layers),
                                                weight_name=f"{LORA}.safetensors")
    return folder


def engine(b: Bench) -> None:
    p, r = b.plan, b.rows
    graphs = "CUDA graphs" if b.cuda and b.settings.cuda_graphs is not False else "eager"
    r.begin("Engine start", f"the engine's defaults on {p.device} ({graphs} unless the engine says otherwise; "
                            f"compile {b.settings.compile_on(p.device)}), Turbo + SSD-1B preloaded")
    started = time.perf_counter()
    os.environ["LORA_DIR"] = str(make_lora(b))
    r.add(f"make a random LoRA ({LORA})", time.perf_counter() - started, mem=False)
    reset_peaks(p.device)
    started = time.perf_counter()
    eng = b.start_engine()
    try:
        b.draft(eng, 1)
        r.add("start to first draft (in process, weights in the page cache)", time.perf_counter() - started,
              stock_key="start", note=f"health: {eng.health().get('memory')}")
        b.stage("correctness", correctness, b, eng)
        b.stage("drafts", drafts, b, eng)
        b.stage("final", final, b, eng)
    finally:
        eng.shutdown(60)
        del eng  # its models go with it (free_memory collects), before the next stage measures memory
        from benchmarks.meters import free_memory

        free_memory(p.device)


def correctness(b: Bench, eng) -> None:
    r = b.rows
    r.begin("Full-size correctness: CUDA graphs against eager, a plain draft after a LoRA draft",
            f"value: mean |pixel difference| 0-255 (same requests, same seeds); an error above {TOL:g}")
    eager = b.start_engine(cuda_graphs=False, preload=False)
    try:
        for n in (1, 4, 16):
            seed = b.next_seed(n)
            got = b.burst(eng, n, prompt=f"{PROMPT}, check", seed=seed)
            want = b.burst(eager, n, prompt=f"{PROMPT}, check", seed=seed)
            worst = max(pixel_diff(g, w) for g, w in zip(got, want, strict=True))
            r.add(f"graphs vs eager, {n} concurrent drafts (worst image)", worst, "",
                  note=f"batch sizes {sorted({g.batch_size for g in got})}",
                  error=None if worst <= TOL else "graphed drafts differ from eager")
        seed = b.next_seed()
        before = b.draft(eng, 1, seed=seed)
        with_lora = b.draft(eng, 1, seed=seed, loras=((LORA, 1.0),))
        after = b.draft(eng, 1, seed=seed)
        plain = b.draft(eager, 1, seed=seed)
        moved = pixel_diff(with_lora, before)
        r.add("LoRA draft vs plain (must differ)", moved, "", error=None if moved > 0 else "the LoRA changed nothing")
        for name, other in (("plain draft after a LoRA draft vs before it", before), ("... vs eager", plain)):
            d = pixel_diff(after, other)
            r.add(name, d, "", error=None if d <= TOL else "weights moved under the graphs")
    finally:
        eager.shutdown(60)
        del eager


def drafts(b: Bench, eng) -> None:
    from benchmarks.meters import free_memory

    p, r = b.plan, b.rows
    free_memory(p.device)  # the eager engine of the correctness stage is gone: the peaks are this engine's alone
    reset_peaks(p.device)
    r.begin("Engine drafts", f"Turbo, 1 step, {p.draft_px} px, submit -> JobResult (PNGs encoded); median of "
                             f"{p.repeats} after {p.warmup} warm-up; memory: peaks since this section began")
    r.try_row("draft, 1 image (prompt cached)", lambda: b.med(lambda: b.draft(eng, 1)), stock_key="draft1")
    count = iter(range(10_000))

    def new_prompt():
        return b.draft(eng, 1, prompt=f"{PROMPT}, new {next(count)}")

    r.try_row("draft, 1 image, a NEW prompt each run (no cache hit)", lambda: b.med(new_prompt), stock_key="draft1")
    r.try_row("drafts, 4 images in one request", lambda: b.med(lambda: b.draft(eng, 4)), stock_key="draft4")
    n, batches = p.concurrency, []

    def burst() -> None:
        batches.append(sorted({x.batch_size for x in b.burst(eng, n)}))

    r.try_row(f"{n} concurrent 1-image drafts", lambda: (n / b.med(burst), f"batch sizes {batches[-1]}"), "img/s",
              stock_key="burst")
    for name, fn in (("stages: drafts, 4 images (cached prompt)", lambda: b.draft(eng, 4)),
                     ("stages: draft, 1 image, new prompt", new_prompt)):
        r.try_row(name, lambda fn=fn: breakdown([fn() for _ in range(max(1, p.repeats))]))


def final(b: Bench, eng) -> None:
    p, r = b.plan, b.rows
    r.begin("SSD-1B final and resident memory",
            f"{p.final_px} px, {p.ssd1b_steps} steps, guidance {p.guidance_ssd1b:g}; memory: peaks since the drafts "
            "section began (drafts and finals of one engine)")
    r.try_row("SSD-1B final", lambda: b.med(lambda: b.final(eng)), stock_key="ssd1b")
    r.try_row("stages: SSD-1B final", lambda: breakdown([b.final(eng)]))
    m = memory(p.device)
    r.add("resident: Turbo + SSD-1B, peak reserved", m.get("reserved", m.get("rss")), "B",
          note=f"allocated {fmt(m.get('allocated'), 'B')}, device in use {fmt(m.get('in_use'), 'B')}")


def restart(b: Bench) -> None:
    from benchmarks.ladder import measure_restart

    r = b.rows
    graphs = b.cuda and b.settings.cuda_graphs is not False
    what = "torch.compile" if b.settings.compile_on(b.plan.device) else ("CUDA graphs" if graphs else "eager")
    r.begin("Restart to first draft", "a new process: imports, Turbo + SSD-1B from the page cache, first draft")
    res = measure_restart(b.settings, b.plan.draft_px, REPO / "benchmarks" / "bench.py", what,
                          timeout=max(30.0, min(300.0, b.left() - 10)))
    r.add("restart to first draft (target <= 30 s)", res.get("seconds"), stock_key="start", note=what,
          error=res.get("error"), mem=False)


def offload(b: Bench) -> None:
    import torch

    from benchmarks.meters import free_memory

    p, r, card = b.plan, b.rows, b.args.card_gib
    context = 0
    note = "CPU: no card to emulate; the offload path runs"
    free_memory(p.device)
    if b.cuda:
        free, total = torch.cuda.mem_get_info()
        context = total - free - torch.cuda.memory_reserved()
        fraction = max(0.01, (card * 2**30 - context) / total)
        torch.cuda.set_per_process_memory_fraction(fraction)
        note = (f"allocator limited to {fmt(fraction * total, 'B')} ({fraction:.4f} of {fmt(total, 'B')}) + CUDA "
                f"context {fmt(context, 'B')} = {card:g} GiB")
    r.begin(f"Offload (ENGINE_MEMORY=offload) on an emulated {card:g} GiB card", note)
    reset_peaks(p.device)
    eng = None
    try:
        started = time.perf_counter()
        eng = b.start_engine(memory="offload", preload=True)
        b.draft(eng, 1)
        r.add("start to first draft", time.perf_counter() - started, stock_key="start")
        r.try_row("draft, 1 image", lambda: b.med(lambda: b.draft(eng, 1)), stock_key="draft1")
        r.try_row("drafts, 4 images", lambda: b.med(lambda: b.draft(eng, 4)), stock_key="draft4")
        r.try_row("SSD-1B final (first one loads)", lambda: b.med(lambda: b.final(eng), repeats=2, warmup=0),
                  stock_key="ssd1b")
    finally:
        if eng is not None:
            eng.shutdown(60)
        m = memory(p.device)
        peak = m["reserved"] + context if "reserved" in m else m.get("rss")
        met = "" if not b.cuda else (" met" if peak <= 7.5e9 else " MISSED")
        r.add("peak reserved + CUDA context (target <= 7.5 GB)", peak, "B", note=f"target{met}")
        if b.cuda:
            torch.cuda.set_per_process_memory_fraction(1.0)
        free_memory(p.device)


def sdxl(b: Bench) -> None:
    from benchmarks.bench import build_models
    from benchmarks.meters import free_memory
    from benchmarks.sides import StockSide

    p, r = b.plan, b.rows
    r.begin("SDXL base + refiner final", f"{p.final_px} px, {p.sdxl_steps} steps, split {p.split:g}")
    started = time.perf_counter()
    build_models(b.args.arch, b.args.cache_dir, b.bargs.init_std, p.device, ("sdxl-base", "sdxl-refiner"))
    r.add("build + save base and refiner", time.perf_counter() - started, mem=False)
    side = StockSide(b.folders, p)
    try:
        side.load_sdxl()
        r.keep_stock("sdxl", r.try_row("stock: base + refiner final", lambda: b.med(side.sdxl)))
    finally:
        side.close()
        free_memory(p.device)
    eng = b.start_engine(final_model="sdxl", preload=False)
    try:
        r.try_row("engine: base + refiner final", lambda: b.med(lambda: b.final(eng, "sdxl")), stock_key="sdxl")
    finally:
        eng.shutdown(60)
        free_memory(p.device)


def compiled(b: Bench) -> None:
    from benchmarks.ladder import compiled_graphs
    from benchmarks.meters import free_memory

    p, r, backend = b.plan, b.rows, b.args.compile_backend
    r.begin("torch.compile (ENGINE_COMPILE=true, Turbo only)",
            f"backend {backend}, mode {b.settings.compile_mode or 'the engine default'}; cold compile cache")
    reset_peaks(p.device)
    started = time.perf_counter()
    eng = b.start_engine(compile=True, compile_models="turbo", compile_backend=backend, preload=False,
                         compile_cache_dir=b.args.cache_dir / "compile-run")
    try:
        b.draft(eng, 1)
        r.add("start to first draft (compiles)", time.perf_counter() - started, stock_key="start")
        for n in (4, 1):  # the other buckets compile untimed
            b.draft(eng, n)
        graphs = compiled_graphs()
        r.try_row("draft, 1 image", lambda: b.med(lambda: b.draft(eng, 1)), stock_key="draft1")
        r.try_row("drafts, 4 images", lambda: b.med(lambda: b.draft(eng, 4)), stock_key="draft4")
        r.add("graphs compiled while timed (0: no recompiles)", compiled_graphs() - graphs, "", mem=False)
    finally:
        eng.shutdown(60)
        free_memory(p.device)
