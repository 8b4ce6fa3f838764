"""The two sides: stock diffusers as a newcomer writes it, and the engine through its public API.

Both offer the same calls (``start``, ``draft``, ``burst``, ``load_ssd1b``, ``ssd1b``, ``load_sdxl``,
``sdxl``, ``same_*``, ``module_dtypes``, ``close``) that :func:`benchmarks.meters.measure` times.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.meters import pipe_dtypes, to_levels
from benchmarks.plan import PROMPT, Plan, log


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
