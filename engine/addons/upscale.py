"""Upscale 2x: "subtle" enlarges with an ESRGAN-family model (spandrel) or Lanczos, "creative" then redraws details.

How the engine calls it, on its worker thread::

    upscaler = Upscaler(addon_settings, device="cuda")     # once; loads the model at first use
    big = upscaler.subtle(final_image)                     # exactly 2x, PIL RGB
    img2img = StableDiffusionXLImg2ImgPipeline.from_pipe(base_pipe)   # the engine's derive()
    big = upscaler.creative(final_image, img2img, prompt_kwargs={"prompt": ..., "negative_prompt": ...,
                            "guidance_scale": 5.0}, seed=job_seed)

Subtle: the model file (``UPSCALER_MODEL``, a Real-ESRGAN x2/x4 or other spandrel-supported
single-image super-resolution model as .safetensors) is loaded with
``spandrel.ModelLoader().load_from_file`` and run over overlapping input tiles
(``UPSCALER_TILE``) so memory stays bounded at any size; an x4 model's tiles are resized to
exactly 2x with Lanczos one by one. Without a model, Lanczos alone enlarges. Both kinds call
``on_tile(done, total)`` after each tile, so the engine reports progress and stops a cancelled job there.

Creative: the subtle result is cut into overlapping tiles (``UPSCALE_TILE``, ``UPSCALE_OVERLAP``);
each goes through the image-to-image pipeline at low strength (``UPSCALE_CREATIVE_STRENGTH``)
with its own seed, and the tiles are blended back with weights that ramp linearly across the
overlaps (feathering), so no tile edge shows. ``prompt_kwargs`` are passed to every tile's call
as they are (prompt text or compel embeddings, guidance, ``callback_on_step_end``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from .settings import AddonMissing, AddonSettings, split_hub_file

log = logging.getLogger(__name__)

SCALE = 2
_ESRGAN_PAD = 16  # input pixels of context around each ESRGAN tile
TileFn = Callable[[int, int], None]  # (tiles done, tiles in all), after each tile; may raise to stop


class UpscaleError(RuntimeError):
    """The upscaler model cannot be used (not a super-resolution model, unreadable file)."""


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spaced start offsets of tiles of ``tile`` px covering ``length`` px, overlapping by >= ``overlap``."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    count = max(count, 2)
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def feather_weights(height: int, width: int, ramp_top: int, ramp_bottom: int, ramp_left: int, ramp_right: int):
    """Blend weights of one tile: 1 inside, ramping linearly to near 0 over the overlaps on the sides that have one."""

    def axis(n: int, head: int, tail: int) -> np.ndarray:
        w = np.ones(n, dtype=np.float32)
        if head:
            w[:head] = (np.arange(head, dtype=np.float32) + 0.5) / head
        if tail:
            w[n - tail:] = np.minimum(w[n - tail:], ((np.arange(tail, dtype=np.float32) + 0.5) / tail)[::-1])
        return w

    return np.outer(axis(height, ramp_top, ramp_bottom), axis(width, ramp_left, ramp_right))[..., None]


class Upscaler:
    """Enlarges finals 2x; holds the loaded ESRGAN-family model (the cache)."""

    def __init__(self, settings: AddonSettings, device: str = "cpu"):
        self.settings = settings
        self.device = device
        self._model = None
        self._fallback = False  # configured model missing: Lanczos

    # ---- the model --------------------------------------------------------------------------

    def model_file(self) -> Path | None:
        """The configured .safetensors, or None when Lanczos is used; AddonMissing when it is not on disk."""
        source = self.settings.upscaler_model
        if not source:
            return None
        path = self.settings.resolve_tiny(source) or Path(source).expanduser()
        if path.is_file():
            return path
        split = split_hub_file(source)
        if split:
            from huggingface_hub import hf_hub_download

            try:
                return Path(hf_hub_download(split[0], split[1], local_files_only=True))
            except Exception:
                pass
        raise AddonMissing(
            f"UPSCALER_MODEL={source} is not on disk: run `python -m engine.addons download upscale`, "
            "or give a local .safetensors file; Lanczos stands in until then."
        )

    def load(self):
        """The spandrel model descriptor (loaded once), or None for Lanczos.

        A configured model that is not on disk was reported at start (:func:`missing`); Lanczos
        then stands in, with a warning logged once.
        """
        if self._model is not None:
            return self._model
        if self._fallback:
            return None
        try:
            path = self.model_file()
        except AddonMissing as exc:
            log.warning("%s", exc)
            self._fallback = True
            return None
        if path is None:
            return None
        if path.suffix != ".safetensors":
            raise UpscaleError(f"UPSCALER_MODEL {path.name}: only .safetensors files are loaded.")
        import torch

        try:
            from spandrel import ImageModelDescriptor, ModelLoader
        except ImportError:
            log.warning(
                "UPSCALER_MODEL is set but spandrel is not installed (pip install -e '.[upscale]'); Lanczos stands in"
            )
            self._fallback = True
            return None
        try:
            model = ModelLoader().load_from_file(str(path))
        except Exception as exc:
            raise UpscaleError(f"UPSCALER_MODEL {path.name} is not a model spandrel knows: {exc}") from None
        if not isinstance(model, ImageModelDescriptor) or model.scale < 2 or model.input_channels != 3:
            raise UpscaleError(f"UPSCALER_MODEL {path.name} is not an RGB super-resolution model (x2 or more).")
        half = self.device.startswith("cuda") and model.supports_half
        model.to(torch.device(self.device))
        if half:
            model.half()
        model.eval()
        log.info("upscaler %s loaded from %s (x%d, %s)", model.architecture.name, path, model.scale,
                 "fp16" if half else "fp32")
        self._model = model
        return model

    def name(self) -> str:
        """What enlarges, for logs and the PNG parameters: e.g. "ESRGAN x4" or "Lanczos"."""
        model = self.load()
        return "Lanczos" if model is None else f"{model.architecture.name} x{model.scale}"

    def model_tiles(self, size: tuple[int, int]) -> int:
        """How many tiles :meth:`subtle` runs the model over for an image of ``size`` (0 with Lanczos)."""
        if self.load() is None:
            return 0
        tile = self.settings.upscaler_tile
        return math.ceil(size[0] / tile) * math.ceil(size[1] / tile)

    def _run_model(self, model, image: Image.Image, on_tile: TileFn | None = None) -> Image.Image:
        """The model over overlapping input tiles, each brought to exactly 2x with its context; its inner part kept.

        An x3+ model's tile is Lanczos-resized to 2x before it is cut (the context is far wider than
        the filter, so the joined picture is what resizing the whole would give, without the whole
        x4 picture in memory). Everything between the model calls is uint8. ``on_tile(done, total)``
        is called after each tile; it may raise to stop.
        """
        import torch

        scale = model.scale
        source = np.asarray(image)
        height, width = source.shape[:2]
        out = np.empty((height * SCALE, width * SCALE, 3), dtype=np.uint8)
        tile = self.settings.upscaler_tile
        dtype = next(model.model.parameters()).dtype
        device = torch.device(self.device)
        total = self.model_tiles(image.size)
        done = 0
        for top in range(0, height, tile):
            for left in range(0, width, tile):
                bottom, right = min(top + tile, height), min(left + tile, width)
                y0, x0 = max(top - _ESRGAN_PAD, 0), max(left - _ESRGAN_PAD, 0)
                y1, x1 = min(bottom + _ESRGAN_PAD, height), min(right + _ESRGAN_PAD, width)
                patch = torch.from_numpy(source[y0:y1, x0:x1].transpose(2, 0, 1).copy())[None]
                with torch.inference_mode():
                    result = model(patch.to(device, torch.float32).div_(255.0).to(dtype))
                    result = result[0].float().clamp_(0, 1).mul_(255.0).round_().to(torch.uint8)
                piece = Image.fromarray(result.permute(1, 2, 0).cpu().numpy())
                if scale != SCALE:
                    piece = piece.resize(((x1 - x0) * SCALE, (y1 - y0) * SCALE), Image.Resampling.LANCZOS)
                oy, ox = (top - y0) * SCALE, (left - x0) * SCALE
                out[top * SCALE:bottom * SCALE, left * SCALE:right * SCALE] = np.asarray(piece)[
                    oy:oy + (bottom - top) * SCALE, ox:ox + (right - left) * SCALE
                ]
                done += 1
                if on_tile is not None:
                    on_tile(done, total)
        return Image.fromarray(out)

    # ---- the two kinds ----------------------------------------------------------------------

    def subtle(self, image: Image.Image, on_tile: TileFn | None = None) -> Image.Image:
        """``image`` enlarged to exactly twice its width and height (RGB); ``on_tile`` after each model tile."""
        image = image.convert("RGB")
        model = self.load()
        if model is None:
            return image.resize((image.width * SCALE, image.height * SCALE), Image.Resampling.LANCZOS)
        return self._run_model(model, image, on_tile)

    def creative(
        self,
        image: Image.Image,
        img2img,
        *,
        prompt_kwargs: dict,
        seed: int,
        strength: float | None = None,
        steps: int | None = None,
        on_tile: TileFn | None = None,
    ) -> Image.Image:
        """:meth:`subtle`, then an image-to-image pass over feathered overlapping tiles; exactly 2x.

        ``on_tile(done, total)`` counts the tiles of both passes (the model's first), after each one.
        """
        import torch

        strength = self.settings.upscale_strength if strength is None else strength
        steps = self.settings.upscale_steps if steps is None else steps
        if int(steps * strength) < 1:
            raise UpscaleError(f"{steps} steps at strength {strength} run no step: raise one of them.")
        image = image.convert("RGB")
        width, height = image.width * SCALE, image.height * SCALE
        tile_h = min(self.settings.upscale_tile, height // 8 * 8)
        tile_w = min(self.settings.upscale_tile, width // 8 * 8)
        overlap = self.settings.upscale_overlap
        rows, cols = tile_starts(height, tile_h, overlap), tile_starts(width, tile_w, overlap)
        first = self.model_tiles(image.size)
        count = first + len(rows) * len(cols)

        def model_tile(done: int, _total: int) -> None:
            if on_tile is not None:
                on_tile(done, count)

        big = self.subtle(image, model_tile)
        total = np.zeros((height, width, 3), dtype=np.float32)
        weight_sum = np.zeros((height, width, 1), dtype=np.float32)
        index = 0
        for r, top in enumerate(rows):
            for c, left in enumerate(cols):
                crop = big.crop((left, top, left + tile_w, top + tile_h))
                result = img2img(
                    image=crop,
                    strength=strength,
                    num_inference_steps=steps,
                    generator=torch.Generator().manual_seed(int(seed) + index),
                    output_type="pil",
                    **prompt_kwargs,
                ).images[0]
                if result.size != crop.size:
                    result = result.resize(crop.size, Image.Resampling.LANCZOS)
                # Ramps where this tile overlaps a neighbour; none at the picture's own edges.
                ramp_top = (rows[r - 1] + tile_h - top) if r > 0 else 0
                ramp_bottom = (top + tile_h - rows[r + 1]) if r + 1 < len(rows) else 0
                ramp_left = (cols[c - 1] + tile_w - left) if c > 0 else 0
                ramp_right = (left + tile_w - cols[c + 1]) if c + 1 < len(cols) else 0
                weights = feather_weights(tile_h, tile_w, ramp_top, ramp_bottom, ramp_left, ramp_right)
                total[top:top + tile_h, left:left + tile_w] += np.asarray(result, dtype=np.float32) * weights
                weight_sum[top:top + tile_h, left:left + tile_w] += weights
                index += 1
                if on_tile is not None:
                    on_tile(first + index, count)
        blended = total / np.maximum(weight_sum, 1e-6)
        return Image.fromarray(np.clip(np.round(blended), 0, 255).astype(np.uint8))


def missing(settings: AddonSettings) -> str | None:
    """One line when an upscaler model is configured but not usable (Lanczos then stands in); None otherwise."""
    if not settings.upscaler_model:
        return None
    try:
        Upscaler(settings).model_file()
    except AddonMissing as exc:
        return str(exc)
    return None


def download(settings: AddonSettings) -> Path | None:
    """Fetch ``owner/repo/file.safetensors`` from the hub (with a progress bar); local files are the owner's."""
    source = settings.upscaler_model
    split = split_hub_file(source) if source else None
    if not split or settings.resolve_tiny(source) is not None or Path(source).expanduser().exists():
        return None
    from huggingface_hub import hf_hub_download

    print(f"fetching upscaler: {source}", flush=True)
    try:
        return Path(hf_hub_download(split[0], split[1]))
    except Exception as exc:
        raise AddonMissing(f"Upscaler {source} could not be downloaded: {exc.__class__.__name__}: {exc}") from None
