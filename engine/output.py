"""Image files: PNG with the generation parameters (the ``parameters`` text chunk)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from PIL import Image, PngImagePlugin

if TYPE_CHECKING:
    from .detail import Detail
    from .requests import Request, UpscaleRequest
    from .results import GeneratedImage, JobResult

SAMPLERS = {"turbo": "Euler a", "ssd-1b": "Euler", "sdxl": "Euler"}
MODEL_NAMES = {"turbo": "sdxl-turbo", "ssd-1b": "SSD-1B", "sdxl": "sdxl-base-1.0+refiner"}


def parameters_text(
    *,
    prompt: str,
    negative_prompt: str,
    steps: int,
    guidance: float,
    seed: int,
    width: int,
    height: int,
    model: str,
    strength: float | None = None,
    tile: bool = False,
    loras: tuple[tuple[str, float], ...] = (),
    reference: str | None = None,
    chaos: int = 0,
    extra: tuple[str, ...] = (),
) -> str:
    """The ``parameters`` text that other Stable Diffusion tools (A1111, Civitai...) read."""
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    fields = [
        f"Steps: {steps}",
        f"Sampler: {SAMPLERS.get(model, 'Euler')}",
        f"CFG scale: {guidance:g}",
        f"Seed: {seed}",
        f"Size: {width}x{height}",
        f"Model: {MODEL_NAMES.get(model, model)}",
    ]
    if strength is not None:
        fields.append(f"Denoising strength: {strength:g}")
    if tile:
        fields.append("Tiling: True")
    for name, weight in loras:
        fields.append(f"Lora: {name}:{weight:g}")
    if reference:
        fields.append(f"IP-Adapter: {reference}")
    if chaos:
        fields.append(f"Chaos: {chaos}")
    fields.extend(extra)
    lines.append(", ".join(fields))
    return "\n".join(lines)


# zlib levels: drafts are seen for seconds and replaced, so they take the fastest level; finals keep 4.
DRAFT_PNG_LEVEL = 1
FINAL_PNG_LEVEL = 4


def encode_png(image: Image.Image, parameters: str, level: int = FINAL_PNG_LEVEL) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", parameters)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info, compress_level=level)
    return buf.getvalue()


def encode_images(
    request, images: list[Image.Image], steps: int, guidance: float, detail: Detail | None = None
) -> tuple[GeneratedImage, ...]:
    """The ``GeneratedImage`` of each PIL image of ``request`` (one per seed): PNG with its parameters,
    ``detail`` (``engine.detail``) added first.

    Shared by the local worker and the cluster's replicas, so both write the same files.
    """
    from .requests import DraftRequest
    from .results import GeneratedImage

    level = DRAFT_PNG_LEVEL if isinstance(request, DraftRequest) else FINAL_PNG_LEVEL

    strengths = getattr(request, "strengths", None) or (request.strength,) * request.count
    reference = None
    if request.reference is not None:
        reference = f"{request.reference_mode} {request.reference_weight:g}"
    generated = []
    for index, (seed, image, jittered) in enumerate(zip(request.seeds, images, strengths, strict=True)):
        if detail is not None:
            image = detail(image, seed, index)
        strength = jittered if request.init is not None else None
        text = parameters_text(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            steps=steps,
            guidance=guidance,
            seed=seed,
            width=image.width,
            height=image.height,
            model=request.model,
            strength=strength,
            tile=request.tile,
            loras=request.loras,
            reference=reference,
            chaos=getattr(request, "chaos", 0),
        )
        generated.append(GeneratedImage(encode_png(image, text, level), seed, image.width, image.height))
    return tuple(generated)


def encode_upscaled(
    request, image: Image.Image, parameters: str, detail: Detail | None = None
) -> tuple[GeneratedImage, ...]:
    """The one ``GeneratedImage`` of an upscale (``parameters`` from ``Recipes.upscale_parameters``)."""
    from .results import GeneratedImage

    if detail is not None:
        image = detail(image, request.seed, 0)
    return (GeneratedImage(encode_png(image, parameters), request.seed, image.width, image.height),)


def read_parameters(png: bytes) -> str | None:
    with Image.open(io.BytesIO(png)) as img:
        return img.info.get("parameters")


def encode_result(
    request: Request,
    images: list,
    steps: int,
    guidance: float,
    timings: dict[str, float],
    batch_size: int,
    upscale_parameters: Callable[[UpscaleRequest, Image.Image], str],
    *,
    detail: Detail | None,
) -> JobResult:
    """The result of a finished run, with its ``encode`` time: PNGs with their parameters, or for a
    describe job the suggestions (``images`` holds them). Shared by the local worker and the replicas.

    ``detail``: ``engine.detail.detail_of(settings)``, added to every image before it is encoded (the
    tiny preset's photo-sized images); no default, so that no path can leave it out."""
    from .requests import DescribeRequest, UpscaleRequest
    from .results import JobResult

    started = time.monotonic()
    suggestions: tuple[str, ...] = ()
    generated: tuple[GeneratedImage, ...]
    if isinstance(request, DescribeRequest):
        generated, suggestions = (), tuple(images)
    elif isinstance(request, UpscaleRequest):
        generated = encode_upscaled(request, images[0], upscale_parameters(request, images[0]), detail)
    else:
        generated = encode_images(request, images, steps, guidance, detail)
    done = dict(timings, encode=round(time.monotonic() - started, 4))
    return JobResult(generated, request.model, request, steps, guidance, done, batch_size, suggestions)
