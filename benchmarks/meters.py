"""The meters: one-time costs paid before timing, freeing memory between sides, peak memory, median
times, module dtypes, images as 0-255 levels, and one side's run through every row."""

from __future__ import annotations

import ctypes
import gc
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.plan import GB, ROW_NAMES, Plan, log


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


def fmt_seconds(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"
