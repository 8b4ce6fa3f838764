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
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as _dt
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere, installed or not
    sys.path.insert(0, str(REPO))

MODELS = ("turbo", "ssd-1b", "sdxl-base", "sdxl-refiner")
PROMPT = "a red fox in fresh snow, golden hour, detailed fur"
GB = 1e9

# Row keys and the names the table starts each row with (tests check that every one is there).
ROW_NAMES = {
    "draft1": "Draft, 1 image",
    "draft4": "Drafts, 4 images in one request",
    "burst": "Concurrent 1-image drafts",
    "ssd1b": "SSD-1B final",
    "sdxl": "SDXL base + refiner final",
    "memory": "Peak memory, Turbo + SSD-1B resident",
    "start": "Start to first draft",
    "same_draft": "Same seed, same image: draft",
    "same_ssd1b": "Same seed, same image: SSD-1B",
    "same_sdxl": "Same seed, same image: SDXL",
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- settings ------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What to run, resolved from the flags."""

    device: str
    dtype: object  # torch.dtype
    quick: bool
    repeats: int
    warmup: int
    draft_px: int
    final_px: int
    ssd1b_steps: int
    sdxl_steps: int
    split: float
    guidance_ssd1b: float
    guidance_sdxl: float
    concurrency: int
    drafts: bool
    finals: bool
    seed: int
    equiv_tol: float
    timeout: float


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", choices=("tiny", "sdxl"), default="tiny",
                   help="tiny: tiny random pipelines (engine.tiny); sdxl: real weights already downloaded")
    p.add_argument("--arch", choices=("full", "tiny"), default=None,
                   help="build random-weight pipelines of this architecture, save them under --cache-dir "
                        "and load both sides from there (full: for GPU runs)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="where tiny/random pipelines are saved (default: the engine's cache dir)")
    p.add_argument("--init-std", type=float, default=0.02, help="std of the random weights with --arch")
    p.add_argument("--prepare-only", action="store_true", help="with --arch: build and save the pipelines, then exit")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", choices=("auto", "float16", "bfloat16", "float32"), default="auto",
                   help="auto: what the engine uses (float16 on CUDA, float32 on the CPU)")
    p.add_argument("--quick", action=argparse.BooleanOptionalAction, default=None,
                   help="small sizes and few steps (default: on for the CPU)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU intra-op threads (default: 1 with --quick on the CPU, where tiny ops gain nothing "
                        "from threads and a busy CI box punishes them; else torch's default)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per row, median reported")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs before each timed row")
    p.add_argument("--concurrency", type=int, default=16, help="concurrent 1-image draft requests")
    p.add_argument("--skip-finals", action="store_true", help="same as --only draft")
    p.add_argument("--only", choices=("draft", "final"), default=None)
    p.add_argument("--engine-memory", choices=("auto", "resident", "offload"), default="auto",
                   help="EngineSettings.memory for the engine side")
    p.add_argument("--max-batch", type=int, default=None, help="EngineSettings.max_batch_images (default: engine's)")
    p.add_argument("--draft-px", type=int, default=None)
    p.add_argument("--final-px", type=int, default=None)
    p.add_argument("--ssd1b-steps", type=int, default=None)
    p.add_argument("--sdxl-steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--equiv-tol", type=float, default=None,
                   help="largest mean |difference| in 0-255 levels that counts as the same image "
                        "(default 0.5 in float32, 2.0 in 16-bit)")
    p.add_argument("--ladder", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the steps table (issue 10): eager, then each step added")
    p.add_argument("--ladder-compile", action=argparse.BooleanOptionalAction, default=None,
                   help="include the torch.compile step in the steps table (default: on for CUDA)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="EngineSettings.compile for the engine side (default: the engine's, on for CUDA)")
    p.add_argument("--compile-models", default=None,
                   help="EngineSettings.compile_models, e.g. turbo,ssd-1b (default: all four)")
    p.add_argument("--restart", action=argparse.BooleanOptionalAction, default=None,
                   help="time a new process from start to first draft (default: on for CUDA)")
    p.add_argument("--restart-probe", default=None, help=argparse.SUPPRESS)
    p.add_argument("--restart-started", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None,
                   help="also write the table to FILE (markdown) and FILE with suffix .json")
    return p.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: PyTorch sees no CUDA GPU")
    if args.dtype == "auto":
        dtype = torch.float16 if device.startswith(("cuda", "mps")) else torch.float32
    else:
        dtype = getattr(torch, args.dtype)
    quick = args.quick if args.quick is not None else device == "cpu"
    only = "draft" if args.skip_finals else args.only
    sixteen = dtype != torch.float32
    return Plan(
        device=device,
        dtype=dtype,
        quick=quick,
        repeats=args.repeats or (1 if quick else 5),
        warmup=args.warmup if args.warmup is not None else 1,
        draft_px=args.draft_px or (256 if quick else 512),
        final_px=args.final_px or (256 if quick else 1024),
        ssd1b_steps=args.ssd1b_steps or (2 if quick else 30),
        sdxl_steps=args.sdxl_steps or (3 if quick else 40),  # 3 steps at 0.8: 2 base + 1 refiner
        split=0.8,
        guidance_ssd1b=7.0,
        guidance_sdxl=6.0,
        concurrency=args.concurrency,
        drafts=only != "final",
        finals=only != "draft",
        seed=args.seed,
        equiv_tol=args.equiv_tol if args.equiv_tol is not None else (2.0 if sixteen else 0.5),
        timeout=600.0,
    )


# ---- model folders ---------------------------------------------------------------------------------


def build_random(arch: str, cache_dir: Path, init_std: float, device: str, half: bool | None = None) -> Path:
    """Random-weight pipelines of ``arch``, saved once; returns their root folder.

    ``half`` (default: on CUDA) saves float16 weights as the ``fp16`` variant, as the hub ships them.
    """
    import torch

    from engine.tiny import build_pipelines

    half = device.startswith("cuda") if half is None else half
    variant = "fp16" if half else None
    root = Path(cache_dir) / f"bench-{arch}-std{init_std:g}-{variant or 'fp32'}"
    if all((root / m / "model_index.json").exists() for m in MODELS):
        save_decoders(root, arch, half)
        return root
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log(f"building random {arch} pipelines (init_std {init_std}) on {device} ...")
    try:  # on a GPU: initialising 9 billion parameters there takes seconds, on a CPU minutes
        with torch.device(device):
            pipelines = build_pipelines(arch, init_std=init_std)
    except Exception as exc:
        if device == "cpu":
            raise
        log(f"  building on {device} failed ({exc.__class__.__name__}: {exc}); building on the CPU")
        pipelines = None
        free_memory(device)
        pipelines = build_pipelines(arch, init_std=init_std)
    log(f"  built in {time.perf_counter() - started:.0f} s; saving under {root}")
    for name in MODELS:
        final = root / name
        pipe = pipelines.pop(name)
        if not (final / "model_index.json").exists():
            if half:
                pipe.to(dtype=torch.float16)
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
            pipe.save_pretrained(tmp, safe_serialization=True, variant=variant)
            try:
                os.replace(tmp, final)
            except OSError:  # another process saved it first
                shutil.rmtree(tmp, ignore_errors=True)
        del pipe
    free_memory(device)
    save_decoders(root, arch, half)
    log(f"  saved in {time.perf_counter() - started:.0f} s")
    return root


def save_decoders(root: Path, arch: str, half: bool) -> None:
    """Beside the pipelines: a random TAESDXL (``AutoencoderTiny``, its published layout at ``--arch full``)
    and the fp16-fix VAE's stand-in (the pipelines' VAE with ``force_upcast`` off, as the fix's config has it)."""
    import torch
    from diffusers import AutoencoderKL, AutoencoderTiny

    from engine.tiny import build_tiny_draft_decoder

    dtype = torch.float16 if half else torch.float32
    if not (root / "taesdxl" / "config.json").exists():
        taesd = AutoencoderTiny() if arch == "full" else build_tiny_draft_decoder(1.75)
        taesd.to(dtype).save_pretrained(root / "taesdxl", safe_serialization=True)
    if not (root / "vae-fp16-fix" / "config.json").exists():
        variant = "fp16" if half else None
        vae = AutoencoderKL.from_pretrained(root / "turbo" / "vae", variant=variant, use_safetensors=True)
        vae.register_to_config(force_upcast=False)
        vae.to(dtype).save_pretrained(root / "vae-fp16-fix", safe_serialization=True)


def engine_settings(args: argparse.Namespace, plan: Plan, root: Path | None):
    from engine.settings import EngineSettings

    base = EngineSettings.for_preset(args.preset if root is None else "sdxl")
    changes: dict[str, object] = {
        "device": plan.device,
        "memory": args.engine_memory,
        "final_model": "ssd-1b",
        "preload": True,
    }
    if args.cache_dir is not None:
        changes["cache_dir"] = args.cache_dir
    if root is not None:
        changes.update(
            turbo_model=str(root / "turbo"),
            ssd1b_model=str(root / "ssd-1b"),
            sdxl_base_model=str(root / "sdxl-base"),
            sdxl_refiner_model=str(root / "sdxl-refiner"),
            draft_vae_model=str(root / "taesdxl"),
            vae_model=str(root / "vae-fp16-fix"),
        )
    if args.max_batch is not None:
        changes["max_batch_images"] = args.max_batch
    if args.compile is not None:
        changes["compile"] = args.compile
    if args.compile_models is not None:
        changes["compile_models"] = args.compile_models
    return base.replace(**changes)


def resolve_folders(settings, plan: Plan) -> dict[str, Path]:
    """The folders the engine loads each model from (its own resolver), so stock loads the same ones."""
    from engine.models import ModelRegistry

    registry = ModelRegistry(settings, plan.device, plan.dtype, "resident")
    return {name: registry.resolve(name) for name in MODELS}


# ---- measuring -------------------------------------------------------------------------------------


def prepare_process(folders: dict[str, Path], plan: Plan) -> None:
    """Pay the one-time costs before either side, so neither pays them in its timings.

    Imports of the pipeline and text-encoder modules, the first kernels (CUDA context, library
    handles, oneDNN), and reading the weight files once so both sides find them in the page cache.
    """
    import torch
    from diffusers import AutoencoderKL, StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline  # noqa: F401
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer  # noqa: F401

    x = torch.randn(64, 64, device=plan.device, dtype=plan.dtype)
    (x @ x).sum().item()
    torch.nn.functional.conv2d(x[None, None], torch.ones(1, 1, 3, 3, device=plan.device, dtype=plan.dtype)).sum().item()
    started, total = time.perf_counter(), 0
    for folder in folders.values():
        for f in folder.rglob("*.safetensors"):
            with open(f, "rb") as fh:
                while chunk := fh.read(1 << 24):
                    total += len(chunk)
    log(f"read {total / GB:.1f} GB of weights into the page cache in {time.perf_counter() - started:.1f} s")


def free_memory(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    try:  # give freed heap back to the OS so the next side's RSS starts from a fair baseline
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class MemoryMeter:
    """Peak memory of one side: CUDA allocator peak, or peak RSS growth sampled on the CPU."""

    def __init__(self, device: str):
        self.device = device
        self.cuda = device.startswith("cuda")
        self._peak = 0
        self._base = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    def start(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return
        self._base = self._peak = self._rss()
        self._stop.clear()

        def sample() -> None:
            while not self._stop.wait(0.01):
                self._peak = max(self._peak, self._rss())

        self._thread = threading.Thread(target=sample, name="bench-rss", daemon=True)
        self._thread.start()

    def peak_bytes(self) -> int:
        """CUDA: the allocator's peak (absolute). CPU: peak RSS minus RSS at start."""
        if self.cuda:
            import torch

            return torch.cuda.max_memory_allocated(self.device)
        self._peak = max(self._peak, self._rss())
        return self._peak - self._base

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def timed(fn: Callable[[], object], repeats: int, warmup: int, sync: Callable[[], None]) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def pipe_dtypes(pipe) -> dict[str, str]:
    out = {}
    for comp in ("unet", "text_encoder", "text_encoder_2", "vae"):
        module = getattr(pipe, comp, None)
        if module is not None:
            out[comp] = str(next(module.parameters()).dtype).removeprefix("torch.")
    return out


def to_levels(images) -> object:
    """uint8 HxWx3 arrays (0-255) from PIL images, PNG bytes or float arrays in [0, 1]."""
    import io

    import numpy as np
    from PIL import Image

    out = []
    for im in images:
        if isinstance(im, bytes):
            with Image.open(io.BytesIO(im)) as img:
                out.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
        elif isinstance(im, Image.Image):
            out.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
        else:  # diffusers' numpy_to_pil rounding
            out.append((np.asarray(im) * 255).round().astype(np.uint8))
    return out


# ---- the two sides -----------------------------------------------------------------------------------


class StockSide:
    """Stock diffusers, as the model cards and diffusers docs show it."""

    name = "stock"

    def __init__(self, folders: dict[str, Path], plan: Plan, taesd_folder: Path | None = None):
        self.folders = folders
        self.plan = plan
        self.taesd_folder = taesd_folder
        self.pipes: dict[str, object] = {}
        self.nonfinite: list[str] = []

    def _load(self, name: str, **extra):
        import diffusers
        from diffusers import DiffusionPipeline
        from packaging.version import Version

        folder = self.folders[name]
        dtype_kw = "dtype" if Version(diffusers.__version__.split(".dev")[0]) >= Version("0.42") else "torch_dtype"
        variant = "fp16" if any(folder.glob("*/*.fp16.safetensors")) else None
        pipe = DiffusionPipeline.from_pretrained(
            folder, variant=variant, use_safetensors=True, **{dtype_kw: self.plan.dtype}, **extra
        ).to(self.plan.device)
        pipe.set_progress_bar_config(disable=True)  # the bars cost nothing measurable; they only flood the log
        self.pipes[name] = pipe
        return pipe

    def start(self) -> None:
        self._load("turbo")
        self.draft(1)

    def _draft_kwargs(self) -> dict:
        px = self.plan.draft_px
        return {"num_inference_steps": 1, "guidance_scale": 0.0, "width": px, "height": px}

    def draft(self, n: int) -> None:
        self.pipes["turbo"](PROMPT, num_images_per_prompt=n, **self._draft_kwargs())

    def burst(self, n: int) -> list[int]:
        self.pipes["turbo"]([f"{PROMPT}, take {i}" for i in range(n)], **self._draft_kwargs())
        return [n]

    def load_ssd1b(self) -> None:
        self._load("ssd-1b")

    def _final_kwargs(self, guidance: float) -> dict:
        px = self.plan.final_px
        return {"guidance_scale": guidance, "width": px, "height": px}

    def ssd1b(self, generator=None, output_type: str = "pil"):
        return self.pipes["ssd-1b"](
            PROMPT,
            num_inference_steps=self.plan.ssd1b_steps,
            generator=generator,
            output_type=output_type,
            **self._final_kwargs(self.plan.guidance_ssd1b),
        ).images

    def load_sdxl(self) -> None:
        base = self._load("sdxl-base")
        self._load("sdxl-refiner", text_encoder_2=base.text_encoder_2, vae=base.vae)

    def sdxl(self, generator=None, output_type: str = "pil"):
        kw = self._final_kwargs(self.plan.guidance_sdxl)
        latents = self.pipes["sdxl-base"](
            PROMPT,
            num_inference_steps=self.plan.sdxl_steps,
            denoising_end=self.plan.split,
            output_type="latent",
            generator=generator,
            **kw,
        ).images
        kw.pop("width"), kw.pop("height")
        return self.pipes["sdxl-refiner"](
            PROMPT,
            image=latents,
            num_inference_steps=self.plan.sdxl_steps,
            denoising_start=self.plan.split,
            generator=generator,
            output_type=output_type,
            **kw,
        ).images

    # Same-seed images: the engine's noise contract (one CPU generator per image, seeded seed+i).
    def _checked(self, what: str, arrays):
        import numpy as np

        arrays = np.asarray(arrays)
        if not np.isfinite(arrays).all():
            self.nonfinite.append(what)
            arrays = np.nan_to_num(arrays, nan=0.0, posinf=1.0, neginf=0.0)
        return to_levels(list(arrays))[0]

    def same_draft(self, seed: int):
        import torch

        g = [torch.Generator("cpu").manual_seed(seed)]
        pipe = self.pipes["turbo"]
        vae = pipe.vae
        if self.taesd_folder is not None:  # the documented swap: pipe.vae = AutoencoderTiny.from_pretrained(...)
            from diffusers import AutoencoderTiny

            pipe.vae = AutoencoderTiny.from_pretrained(self.taesd_folder, **{self._dtype_kw(): self.plan.dtype}).to(
                self.plan.device
            )
        try:
            out = pipe(PROMPT, generator=g, output_type="np", **self._draft_kwargs()).images
        finally:
            pipe.vae = vae
        return self._checked("draft", out)

    @staticmethod
    def _dtype_kw() -> str:
        import diffusers
        from packaging.version import Version

        return "dtype" if Version(diffusers.__version__.split(".dev")[0]) >= Version("0.42") else "torch_dtype"

    def same_ssd1b(self, seed: int):
        import torch

        return self._checked("ssd-1b", self.ssd1b([torch.Generator("cpu").manual_seed(seed)], output_type="np"))

    def same_sdxl(self, seed: int):
        import torch

        return self._checked("sdxl", self.sdxl([torch.Generator("cpu").manual_seed(seed)], output_type="np"))

    def module_dtypes(self) -> dict[str, dict[str, str]]:
        return {name: pipe_dtypes(pipe) for name, pipe in self.pipes.items()}

    def close(self) -> None:
        self.pipes.clear()


class EngineSide:
    """The engine, through its public API: submit -> JobResult (PNG bytes)."""

    name = "engine"

    def __init__(self, settings, plan: Plan, dtype_override: bool):
        self.settings = settings
        self.plan = plan
        self.dtype_override = dtype_override
        self.engine = None
        self._seed = plan.seed + 10_000
        self.batches: list[list[int]] = []
        self.timings: list[dict] = []

    def _next_seed(self, n: int = 1) -> int:
        self._seed += n
        return self._seed

    def _run(self, request, user: str = "bench"):
        result = self.engine.submit(request, user=user).future.result(timeout=self.plan.timeout)
        self.timings.append({"kind": request.kind, **result.timings})
        return result

    def start(self) -> None:
        from engine.worker import Engine

        settings = self.settings.replace(preload=False) if self.dtype_override else self.settings
        self.engine = Engine(settings).start()
        if self.dtype_override:
            # No EngineSettings.dtype yet: set the registry's dtype before anything loads (preload off).
            self.engine.registry.dtype = self.plan.dtype
        self.draft(1)

    def draft(self, n: int, seed: int | None = None):
        from engine.requests import DraftRequest

        px = self.plan.draft_px
        seed = self._next_seed(n) if seed is None else seed
        return self._run(DraftRequest(PROMPT, seed, width=px, height=px, count=n, steps=1))

    def burst(self, n: int) -> list[int]:
        from engine.requests import DraftRequest

        px = self.plan.draft_px
        base = self._next_seed(n)
        handles = [
            self.engine.submit(
                DraftRequest(f"{PROMPT}, take {i}", base + i, width=px, height=px, count=1, steps=1),
                user=f"user-{i}",
            )
            for i in range(n)
        ]
        results = [h.future.result(timeout=self.plan.timeout) for h in handles]
        # Batches the worker ran: k jobs reporting batch_size b make k / b batches of b jobs.
        per_size: dict[int, int] = {}
        for r in results:
            per_size[r.batch_size] = per_size.get(r.batch_size, 0) + 1
        sizes = sorted((b for b, k in per_size.items() for _ in range(max(1, k // b))), reverse=True)
        self.batches.append(sizes)
        return sizes

    def load_ssd1b(self) -> None:
        pass  # preloaded at start (final_model ssd-1b); else the warm-up job loads it

    def _final(self, model: str, seed: int | None):
        from engine.requests import FinalRequest

        px = self.plan.final_px
        p = self.plan
        steps, guidance = (p.ssd1b_steps, p.guidance_ssd1b) if model == "ssd-1b" else (p.sdxl_steps, p.guidance_sdxl)
        seed = self._next_seed() if seed is None else seed
        request = FinalRequest(
            PROMPT, seed, width=px, height=px, model=model, steps=steps, guidance=guidance, refiner_split=p.split
        )
        return self._run(request)

    def ssd1b(self):
        return self._final("ssd-1b", None)

    def load_sdxl(self) -> None:
        pass  # the engine loads base + refiner on the first SDXL job (the warm-up run)

    def sdxl(self):
        return self._final("sdxl", None)

    def same_draft(self, seed: int):
        return to_levels([self.draft(1, seed).images[0].png])[0]

    def same_ssd1b(self, seed: int):
        return to_levels([self._final("ssd-1b", seed).images[0].png])[0]

    def same_sdxl(self, seed: int):
        return to_levels([self._final("sdxl", seed).images[0].png])[0]

    def module_dtypes(self) -> dict[str, dict[str, str]]:
        """What the engine's loaded pipelines really hold (a loader may change dtypes behind its back)."""
        out: dict[str, dict[str, str]] = {}
        registry = self.engine.registry if self.engine is not None else None
        for name in registry.loaded_names() if registry is not None else []:
            loaded = registry.get(name)
            for task in ("text2img", "img2img"):
                pipe = getattr(loaded, task, None)
                if pipe is not None:
                    out[f"{name} {task}"] = pipe_dtypes(pipe)
        return out

    def close(self) -> None:
        if self.engine is not None:
            unfinished = self.engine.shutdown(timeout=60)
            if unfinished:
                log(f"  engine shutdown left {len(unfinished)} job(s) unfinished")
            self.engine = None


# ---- one side's run ----------------------------------------------------------------------------------


@dataclass
class SideResult:
    values: dict[str, float] = field(default_factory=dict)  # row key -> seconds / images/s / bytes
    runs: dict[str, list[float]] = field(default_factory=dict)
    images: dict[str, object] = field(default_factory=dict)  # same-seed images, uint8 arrays
    errors: dict[str, str] = field(default_factory=dict)
    extras: dict[str, object] = field(default_factory=dict)


def measure(side, plan: Plan) -> SideResult:
    import torch

    res = SideResult()
    cuda = plan.device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def step(key: str, fn: Callable[[], None]) -> bool:
        try:
            fn()
            return True
        except Exception as exc:  # a failed row must not lose the others
            res.errors[key] = f"{exc.__class__.__name__}: {exc}"
            log(f"  [{side.name}] {key} FAILED: {res.errors[key]}")
            return False

    def time_row(key: str, fn: Callable[[], object], per: float | None = None) -> None:
        def run() -> None:
            median, runs = timed(fn, plan.repeats, plan.warmup, sync)
            res.runs[key] = runs
            res.values[key] = per / median if per else median
            shown = f"{res.values[key]:.2f} images/s" if per else fmt_seconds(median)
            log(f"  [{side.name}] {ROW_NAMES[key]}: {shown}")

        step(key, run)

    meter = MemoryMeter(plan.device)
    free_memory(plan.device)
    meter.start()
    try:
        log(f"[{side.name}]")
        started = time.perf_counter()
        if not step("start", side.start):
            return res
        sync()
        res.values["start"] = time.perf_counter() - started
        log(f"  [{side.name}] {ROW_NAMES['start']}: {fmt_seconds(res.values['start'])}")
        if plan.drafts:
            time_row("draft1", lambda: side.draft(1))
            time_row("draft4", lambda: side.draft(4))
            time_row("burst", lambda: side.burst(plan.concurrency), per=plan.concurrency)
            step("same_draft", lambda: res.images.__setitem__("same_draft", side.same_draft(plan.seed)))
        if plan.finals:
            if step("ssd1b", side.load_ssd1b):
                time_row("ssd1b", side.ssd1b)
                step("same_ssd1b", lambda: res.images.__setitem__("same_ssd1b", side.same_ssd1b(plan.seed)))
        res.values["memory"] = meter.peak_bytes()
        log(f"  [{side.name}] {ROW_NAMES['memory']}: {res.values['memory'] / GB:.2f} GB")
        if plan.finals:
            if step("sdxl", side.load_sdxl):
                time_row("sdxl", side.sdxl)
                step("same_sdxl", lambda: res.images.__setitem__("same_sdxl", side.same_sdxl(plan.seed)))
        res.extras["peak_memory_all_bytes"] = meter.peak_bytes()
    finally:
        try:
            res.extras["module_dtypes"] = side.module_dtypes()
        except Exception as exc:  # a report only
            res.extras["module_dtypes"] = {"error": repr(exc)}
        meter.stop()
        try:
            side.close()
        finally:
            free_memory(plan.device)
    return res


# ---- the table ---------------------------------------------------------------------------------------


def fmt_seconds(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


@dataclass
class Row:
    key: str
    work: str
    stock: str
    engine: str
    ratio: str
    target: str
    stock_value: float | None = None
    engine_value: float | None = None
    ratio_value: float | None = None
    met: bool | None = None
    error: str | None = None


def build_rows(plan: Plan, stock: SideResult, eng: SideResult, meta: dict) -> list[Row]:
    import numpy as np

    p = plan
    rows: list[Row] = []
    detail = {
        "draft1": f"(Turbo, 1 step, {p.draft_px} px)",
        "draft4": f"(Turbo, 1 step, {p.draft_px} px)",
        "burst": f"x{p.concurrency}, images/s (stock: {p.concurrency} prompts in one call)",
        "ssd1b": f"({p.final_px} px, {p.ssd1b_steps} steps, guidance {p.guidance_ssd1b:g})",
        "sdxl": f"({p.final_px} px, {p.sdxl_steps} steps, split {p.split:g})",
        "memory": "(drafts + SSD-1B finals)" if p.finals else "(drafts only)",
        "start": "(weights on disk; engine: start() -> first JobResult)",
        "same_draft": "(mean abs pixel diff, 0-255)",
        "same_ssd1b": "(mean abs pixel diff, 0-255)",
        "same_sdxl": "(mean abs pixel diff, 0-255)",
    }
    # (target text, ratio check or None, absolute engine check or None)
    targets: dict[str, tuple[str, Callable | None, Callable | None]] = {
        "draft1": ("<= 0.25", lambda r: r <= 0.25, None),
        "draft4": ("<= 0.30", lambda r: r <= 0.30, None),
        "burst": (">= 3.0", lambda r: r >= 3.0, None),
        "ssd1b": ("<= 0.60", lambda r: r <= 0.60, None),
        "sdxl": ("<= 0.60", lambda r: r <= 0.60, None),
        "memory": ("engine <= 12 GB", None, lambda v: v <= 12 * GB),
        "start": ("engine <= 30 s", None, lambda v: v <= 30),
    }
    skipped = {
        "draft1": not p.drafts, "draft4": not p.drafts, "burst": not p.drafts, "same_draft": not p.drafts,
        "ssd1b": not p.finals, "sdxl": not p.finals, "same_ssd1b": not p.finals, "same_sdxl": not p.finals,
    }
    for key, name in ROW_NAMES.items():
        work = f"{name} {detail[key]}"
        if skipped.get(key):
            rows.append(Row(key, work, "skipped", "skipped", "-", targets.get(key, ("-",))[0]))
            continue
        error = "; ".join(f"{side}: {r.errors[key]}" for side, r in (("stock", stock), ("engine", eng))
                          if key in r.errors)
        if key.startswith("same_"):
            tol = f"<= {p.equiv_tol:g} (fp noise)"
            a, b = stock.images.get(key), eng.images.get(key)
            if a is None or b is None or error:
                rows.append(Row(key, work, "reference", "error" if error else "n/a", "-", tol, error=error or None))
                continue
            if a.shape != b.shape:
                rows.append(Row(key, work, "reference", f"size {b.shape} vs {a.shape}", "-", tol, met=False))
                continue
            diff = np.abs(a.astype(np.float32) - b.astype(np.float32))
            mean = float(diff.mean())
            met = mean <= p.equiv_tol
            rows.append(Row(key, work, "reference", f"{mean:.3f} (max {diff.max():.0f})", "-",
                            f"{tol} {'met' if met else 'MISSED'}", engine_value=mean, met=met))
            continue
        sv, ev = stock.values.get(key), eng.values.get(key)
        text, ratio_ok, abs_ok = targets[key]

        def show(v, key=key):
            if v is None:
                return "error"
            if key == "burst":
                return f"{v:.2f} img/s"
            if key == "memory":
                return f"{v / GB:.2f} GB" + ("" if meta["cuda"] else " RSS")
            return fmt_seconds(v)

        ratio = ev / sv if sv and ev is not None and sv > 0 else None
        met = None
        if ratio_ok is not None and ratio is not None:
            met = ratio_ok(ratio)
        elif abs_ok is not None and ev is not None and (meta["cuda"] or key != "memory"):
            met = abs_ok(ev)
        target = text + ("" if met is None else (" met" if met else " missed"))
        rows.append(Row(key, work, show(sv), show(ev), f"{ratio:.2f}" if ratio is not None else "-", target,
                        sv, ev, ratio, met, error or None))
    return rows


def render(rows: list[Row], meta: dict) -> str:
    lines = [
        f"# Benchmark: stock diffusers vs engine ({meta['label']})",
        "",
        f"- device: {meta['device_name']} ({meta['device']}, {meta['dtype']})",
        f"- torch {meta['torch']}, diffusers {meta['diffusers']}, transformers {meta['transformers']}, "
        f"python {meta['python']}",
        f"- date: {meta['date']}",
        f"- command: `{meta['command']}`",
        f"- models: {meta['models']}",
        f"- median of {meta['repeats']} timed run(s) after {meta['warmup']} warm-up; engine times are submit -> "
        "JobResult (PNGs encoded), stock times are the `pipe(...)` call",
        "",
        "| work | stock | engine | ratio (engine/stock) | target (issue 5) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r.work} | {r.stock} | {r.engine} | {r.ratio} | {r.target} |")
    lines.append("")
    for note in meta["notes"]:
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"


def system_meta(args: argparse.Namespace, plan: Plan, folders: dict[str, Path], argv: list[str] | None) -> dict:
    import diffusers
    import torch
    import transformers

    cuda = plan.device.startswith("cuda")
    if cuda:
        device_name = torch.cuda.get_device_name(torch.device(plan.device))
    else:
        device_name = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    device_name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        device_name += f", {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    if args.arch:
        label = f"--arch {args.arch}, random weights, init_std {args.init_std:g}"
    else:
        label = f"--preset {args.preset}"
    if plan.quick:
        label += ", quick (reduced sizes and steps: not the issue-5 recipe)"
    roots = sorted({str(f.parent) for f in folders.values()})
    return {
        "label": label,
        "device": plan.device,
        "device_name": device_name,
        "cuda": cuda,
        "dtype": str(plan.dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python benchmarks/bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "models": ", ".join(roots),
        "repeats": plan.repeats,
        "warmup": plan.warmup,
        "notes": [],
    }


# ---- main --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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


def draft_decoder_folder(settings) -> Path | None:
    """The TAESDXL folder the engine decodes drafts with (stock's same-seed draft swaps it in), or None."""
    if settings.draft_decoder != "tiny" or not settings.draft_vae_model:
        return None
    source = settings.draft_vae_model
    if source.startswith("tiny:"):
        from engine.tiny import ensure_tiny_models

        return ensure_tiny_models(Path(settings.cache_dir)) / source.removeprefix("tiny:")
    if Path(source).expanduser().exists():
        return Path(source).expanduser()
    from engine.models import VAE_FILES, ModelMissing, ModelRegistry

    try:
        return ModelRegistry(settings, "cpu", None, "resident")._hub_snapshot(source, VAE_FILES, "draft decoder")
    except ModelMissing:
        return None  # the engine falls back to the full VAE too


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
        root = build_random(args.arch, Path(cache), args.init_std, plan.device)
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
    bad: list[str] = []
    for r in rows:
        if r.error:
            bad.append(f"{r.key}: {r.error}")
        elif r.key.startswith("same_") and r.met is False:
            bad.append(f"{r.key}: images differ beyond {plan.equiv_tol:g}")
    want = meta["dtype"]
    for side_name, side in (("stock", stock), ("engine", eng)):
        dtypes = side.extras.get("module_dtypes") or {}
        wrong = sorted({  # text2img and img2img share modules: name each model once
            f"{pipe.split()[0]} {comp} {dt}" for pipe, comps in dtypes.items() if isinstance(comps, dict)
            for comp, dt in comps.items() if dt != want
        })
        if wrong:
            msg = f"{side_name} modules not in {want} after loading: {', '.join(wrong)}"
            meta["notes"].append(msg)
            bad.append(msg)
    finite = "none" if not stock_side.nonfinite else ", ".join(stock_side.nonfinite)
    meta["notes"].append(f"stock same-seed outputs with NaN/inf: {finite}; the engine refuses NaN images itself "
                         "(such a job fails and shows as an error)")
    if stock_side.nonfinite:
        bad.append(f"NaN/inf in stock outputs: {finite}")
    if eng_side.batches:
        meta["notes"].append(f"engine batches under {plan.concurrency} concurrent requests (jobs per GPU batch, "
                             f"each repeat): {eng_side.batches}")
    if not meta["cuda"]:
        meta["notes"].append("CPU memory is resident-set growth per side (stock runs first); the 12 GB target "
                             "is for CUDA and not judged here. Speed targets are for GPUs.")
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
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
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
        args.out.with_suffix(".json").write_text(json.dumps(payload, indent=1, default=str))
    if bad:
        log("FAILED: " + "; ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
