"""The fast path one step at a time: a row per step of issue 10, eager first, then each step added.

One engine is started with every step off (what the engine did before issue 10), then the steps are
switched on in order on that same engine, through the same settings the engine reads at each call
(``EngineSettings`` fields; fused kernels and compiled graphs are applied to the loaded modules the
way the loader applies them). Every row has draft latency (1 and 4 images), images/s of a burst of
concurrent one-image drafts and the batches it ran as, the text-encoder runs of a reroll, the stage
times of a 4-image draft (text encoders, UNet, decode), the SSD-1B final, peak memory and the graphs
compiled during the timed runs (0 after warm-up means no recompiles), each with its ratio to stock.

``restart_probe`` runs in a new process (``bench.py --restart-probe``) and reports the time from the
process start to its first draft, with the compile cache the earlier runs left on disk.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PROMPT = "a red fox in fresh snow, golden hour, detailed fur"

# Every step off: the engine before issue 10 (its batching, no cache, full-VAE drafts, upcast decode).
BASELINE = {
    "gather_ms": 0.0,
    "max_batch_images": 8,
    "prompt_cache_size": 0,
    "draft_decoder": "full",
    "fast_kernels": False,
    "compile": False,
    "cuda_graphs": False,
    "guidance_cutoff": 0.0,
    "vae_model": "",  # each model's own VAE, upcast to float32 for the decode (the fp16 step turns that off)
}

# (key, what the row adds, settings it changes). "fp16_vae" and "compile" also act on loaded modules.
STEPS: list[tuple[str, str, dict]] = [
    ("eager", "eager: every step off", {}),
    ("batching", "+ gather window 4 ms, batches up to 16", {"gather_ms": 4.0, "max_batch_images": 16}),
    ("prompt_cache", "+ prompt-embedding cache", {"prompt_cache_size": 64}),
    ("taesd", "+ TAESDXL draft decoder", {"draft_decoder": "tiny"}),
    ("fp16_vae", "+ fp16-fix VAE: finals decode in the model dtype", {}),
    ("kernels", "+ channels-last, fused QKV, SDPA", {"fast_kernels": True}),
    ("graphs", "+ explicit CUDA graphs per bucket (Turbo UNet, draft decoder)", {"cuda_graphs": True}),
    ("compile", "+ torch.compile, reduce-overhead (its own CUDA graphs) instead", {"compile": True}),
    ("cutoff", "+ guidance off for the last 20% (finals; changes images)", {"guidance_cutoff": 0.2}),
]


@dataclass
class StepResult:
    key: str
    title: str
    values: dict[str, float] = field(default_factory=dict)
    batches: list[list[int]] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    reroll_encoder_runs: int | None = None
    recompiles: int | None = None
    note: str = ""
    errors: dict[str, str] = field(default_factory=dict)


def compiled_graphs() -> int:
    """Graphs dynamo has compiled in this process so far (a recompile adds one)."""
    try:
        from torch._dynamo.utils import counters

        return int(counters["stats"]["unique_graphs"])
    except Exception:  # no dynamo: nothing compiles
        return 0


def set_settings(engine, **changes) -> None:
    """Switch settings on a running engine: the worker, the recipes and the loader read them at each call."""
    new = engine.settings.replace(**changes)
    engine.settings = new
    engine.recipes.settings = new
    engine.registry.settings = new
    if "prompt_cache_size" in changes:
        engine.recipes.prompts.size = new.prompt_cache_size


def loaded_modules(engine) -> list[tuple[str, object]]:
    out = []
    registry = engine.registry
    for name in registry.loaded_names():
        pipe = registry.get(name).img2img
        out += [(f"{name} unet", pipe.unet), (f"{name} vae", pipe.vae)]
    return out


class Ladder:
    """Runs the steps on one engine; ``sync`` waits for the device, ``plan`` is benchmarks.plan.Plan."""

    def __init__(self, settings, plan, timed, sync, concurrency: int, compile_steps: bool):
        self.settings = settings.replace(**BASELINE, preload=True)
        self.plan = plan
        self.timed = timed
        self.sync = sync
        self.concurrency = concurrency
        self.compile_steps = compile_steps
        self.engine = None
        self._seed = plan.seed + 50_000

    def _next_seed(self, n: int = 1) -> int:
        self._seed += n
        return self._seed

    def _run(self, request):
        return self.engine.submit(request, user="ladder").future.result(timeout=self.plan.timeout)

    def draft(self, n: int, prompt: str = PROMPT):
        from engine.requests import DraftRequest

        px = self.plan.draft_px
        return self._run(DraftRequest(prompt, self._next_seed(n), width=px, height=px, count=n, steps=1))

    def burst(self) -> list[int]:
        from engine.requests import DraftRequest

        px, n = self.plan.draft_px, self.concurrency
        base = self._next_seed(n)
        requests = [DraftRequest(f"{PROMPT}, take {i}", base + i, width=px, height=px, count=1) for i in range(n)]
        handles = [self.engine.submit(r, user=f"user-{i}") for i, r in enumerate(requests)]
        results = [h.future.result(timeout=self.plan.timeout) for h in handles]
        per_size: dict[int, int] = {}
        for r in results:
            per_size[r.batch_size] = per_size.get(r.batch_size, 0) + 1
        return sorted((b for b, k in per_size.items() for _ in range(max(1, k // b))), reverse=True)

    def final(self):
        from engine.requests import FinalRequest

        p = self.plan
        request = FinalRequest(
            PROMPT,
            self._next_seed(),
            width=p.final_px,
            height=p.final_px,
            model="ssd-1b",
            steps=p.ssd1b_steps,
            guidance=p.guidance_ssd1b,
        )
        return self._run(request)

    # ---- steps -------------------------------------------------------------------------------

    def apply(self, key: str, changes: dict) -> str:
        """Switch one step on; returns a note for the table."""
        import torch

        engine = self.engine
        if changes:
            set_settings(engine, **changes)
        if key == "fp16_vae":
            half = [n for n, m in loaded_modules(engine) if n.endswith("vae") and m.dtype != torch.float32]
            for _, vae in loaded_modules(engine):
                if getattr(vae.config, "force_upcast", False):
                    vae.register_to_config(force_upcast=False)  # what the fp16-fix VAE's config says
            return "" if half else "float32 here: nothing to change"
        if key == "kernels":
            for _, module in loaded_modules(engine):
                engine.registry._optimize(module)
            engine.registry._optimize(engine.recipes.draft_decoder())
            return ""
        if key == "graphs":
            engine.registry.graphs = self.plan.device.startswith("cuda")
            if not engine.registry.graphs:
                return "CUDA only: nothing to change"
            started = time.perf_counter()
            buckets = engine.recipes.warm_up_drafts(self.plan.draft_px, self.plan.draft_px)
            self.sync()
            return f"captures for buckets {buckets}: {time.perf_counter() - started:.1f} s"
        if key == "compile":
            registry = engine.registry
            registry.graphs = False
            engine.recipes._graphs.clear()
            registry.compiled = True
            wanted = engine.settings.compiled_models()
            for name in registry.loaded_names():
                unet = registry.get(name).img2img.unet
                if name in wanted and id(unet) not in registry._compiled_ids:
                    registry._compiled_ids.add(id(unet))
                    registry._compile(unet)
            decoder = engine.recipes.draft_decoder()
            if decoder is not None and "turbo" in wanted:
                registry._compile(decoder.decoder)
            started = time.perf_counter()
            buckets = engine.recipes.warm_up_drafts(self.plan.draft_px, self.plan.draft_px)
            if self.plan.finals and "ssd-1b" in wanted:
                self.final()
            self.sync()
            finals = " and SSD-1B" if self.plan.finals and "ssd-1b" in wanted else ""
            return f"warm-up (compiles buckets {buckets}{finals}): " + (
                f"{time.perf_counter() - started:.1f} s"
            )
        return ""

    def measure_step(self, key: str, title: str, changes: dict) -> StepResult:
        import torch

        res = StepResult(key, title)
        cuda = self.plan.device.startswith("cuda")
        try:
            res.note = self.apply(key, changes)
        except Exception as exc:
            res.errors["apply"] = f"{exc.__class__.__name__}: {exc}"
            return res
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.plan.device)
        graphs_before = compiled_graphs()
        p = self.plan

        def row(name: str, fn, per: float | None = None) -> None:
            try:
                median, _ = self.timed(fn, p.repeats, p.warmup, self.sync)
                res.values[name] = per / median if per else median
            except Exception as exc:  # one failed cell must not lose the others
                res.errors[name] = f"{exc.__class__.__name__}: {exc}"

        if p.drafts:
            row("draft1", lambda: self.draft(1))
            row("draft4", lambda: self.draft(4))
            row("burst", lambda: res.batches.append(self.burst()), per=self.concurrency)
            try:
                stages = [self.draft(4).timings for _ in range(max(1, p.repeats))]
                res.stages = {s: statistics.median(t.get(s, 0.0) for t in stages) for s in ("text", "unet", "decode")}
                runs_before = self.engine.recipes.prompts.encoder_runs
                self.draft(1, prompt=f"{PROMPT}, reroll check {key}")
                runs_mid = self.engine.recipes.prompts.encoder_runs
                self.draft(1, prompt=f"{PROMPT}, reroll check {key}")  # 🔁: same prompt, new seed
                res.reroll_encoder_runs = self.engine.recipes.prompts.encoder_runs - runs_mid
                assert runs_mid - runs_before == 1, "a new prompt should run the encoders once"
            except Exception as exc:
                res.errors["stages"] = f"{exc.__class__.__name__}: {exc}"
        if p.finals:
            row("ssd1b", self.final)
        res.recompiles = compiled_graphs() - graphs_before
        if cuda:
            res.values["memory"] = torch.cuda.max_memory_allocated(self.plan.device)
        return res

    def run(self, log) -> list[StepResult]:
        from engine.worker import Engine

        results: list[StepResult] = []
        self.engine = Engine(self.settings).start()
        try:
            self.engine.wait_ready(self.plan.timeout)
            if self.plan.finals:
                self.engine.registry.get("ssd-1b")
            self.draft(1)  # first kernels, untimed
            for key, title, changes in STEPS:
                if key == "graphs" and not self.plan.device.startswith("cuda"):
                    results.append(StepResult(key, title, note="skipped: CUDA only"))
                    continue
                if key == "compile" and not self.compile_steps:
                    results.append(StepResult(key, title, note="skipped (--ladder-compile off; CPU default)"))
                    continue
                if key == "cutoff" and not self.plan.finals:
                    continue
                log(f"[ladder] {title}")
                results.append(self.measure_step(key, title, changes))
                r = results[-1]
                shown = ", ".join(f"{k} {v:.3f}" for k, v in r.values.items() if k != "memory")
                log(f"  {shown} batches {r.batches} reroll encoder runs {r.reroll_encoder_runs} {r.note}")
        finally:
            self.engine.shutdown(timeout=60)
            self.engine = None
        return results


# ---- the table -------------------------------------------------------------------------------------


def fmt_s(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def render(steps: list[StepResult], stock: dict[str, float], cuda: bool, concurrency: int,
           restart: dict | None) -> str:
    def ratio(key: str, value: float | None, inverse: bool = False) -> str:
        ref = stock.get(key)
        if value is None or not ref:
            return "-"
        return f"{(value / ref):.2f}" if not inverse else f"{(value / ref):.2f}x"

    lines = [
        "## Steps (issue 10): eager, then each step added",
        "",
        f"| step | draft 1 | /stock | drafts 4 | /stock | burst x{concurrency} | x stock | batches | "
        "reroll encoder runs | drafts 4: text / UNet / decode | SSD-1B final | /stock | peak memory | "
        "graphs compiled while timed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in steps:
        v = r.values
        if r.errors.get("apply"):
            lines.append(f"| {r.title} | error: {r.errors['apply']} |" + " |" * 13)
            continue
        if not v and r.note:
            lines.append(f"| {r.title} | {r.note} |" + " |" * 13)
            continue
        stages = " / ".join(fmt_s(r.stages.get(s)) for s in ("text", "unet", "decode")) if r.stages else "-"
        memory = f"{v['memory'] / 1e9:.2f} GB" if "memory" in v else ("-" if not cuda else "?")
        burst = f"{v['burst']:.1f} img/s" if "burst" in v else "-"
        title = r.title + (f" ({r.note})" if r.note else "")
        errors = "; ".join(f"{k}: {e}" for k, e in r.errors.items())
        if errors:
            title += f" — errors: {errors}"
        lines.append(
            f"| {title} | {fmt_s(v.get('draft1'))} | {ratio('draft1', v.get('draft1'))} | {fmt_s(v.get('draft4'))} | "
            f"{ratio('draft4', v.get('draft4'))} | {burst} | {ratio('burst', v.get('burst'), True)} | "
            f"{r.batches or '-'} | {r.reroll_encoder_runs if r.reroll_encoder_runs is not None else '-'} | {stages} | "
            f"{fmt_s(v.get('ssd1b'))} | {ratio('ssd1b', v.get('ssd1b'))} | {memory} | "
            f"{r.recompiles if r.recompiles is not None else '-'} |"
        )
    lines.append("")
    if restart is not None:
        if "seconds" in restart:
            lines.append(f"- restart to first draft (new process, caches on disk, {restart['what']}): "
                         f"{restart['seconds']:.1f} s (target <= 30 s)")
        else:
            lines.append(f"- restart to first draft: error: {restart.get('error')}")
    lines.append("- each step keeps the ones above it; the ratio columns divide by stock's row in the table above")
    return "\n".join(lines) + "\n"


# ---- restart in a new process ----------------------------------------------------------------------


def settings_json(settings) -> str:
    return settings.model_dump_json()


def restart_probe(settings_text: str, draft_px: int, started_at: float) -> dict:
    """In a fresh process: start an engine and make one draft; seconds since ``started_at`` (wall clock)."""
    from engine.requests import DraftRequest
    from engine.settings import EngineSettings
    from engine.worker import Engine

    settings = EngineSettings.model_validate_json(settings_text)
    engine = Engine(settings).start()
    try:
        request = DraftRequest(PROMPT, 1, width=draft_px, height=draft_px, count=1)
        engine.submit(request, user="restart").future.result(timeout=900)
        return {"seconds": time.time() - started_at}
    finally:
        engine.shutdown(timeout=30)


def measure_restart(settings, draft_px: int, bench_path: Path, what: str, timeout: float = 900) -> dict:
    started = time.time()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.run(
            [sys.executable, str(bench_path), "--restart-probe", settings_json(settings), "--draft-px",
             str(draft_px), "--restart-started", repr(started)],
            capture_output=True, text=True, timeout=timeout, env=env,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"no first draft within {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            out = json.loads(line)
            out["what"] = what
            return out
    return {"error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:] or ''}"}
